"""The ``train:`` section of a recipe (:class:`TrainConfig`), checked by the one recipe parser in
:mod:`xmodal.config` (``load_recipe`` and ``apply_overrides`` live there and are re-exported here).

Batch semantics: ``batch_size`` is the number of samples one process uses for one optimizer step; with
``grad_accum: k`` that batch is split into ``k`` micro-batches of ``batch_size // k`` samples (so ``grad_accum``
trades memory for time and, for contrastive losses, does not change the result). Under ``torchrun`` each of the
``world_size`` processes takes its own ``batch_size`` samples per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xmodal.config.recipe import apply_overrides, load_recipe
from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError

__all__ = ["TrainConfig", "apply_overrides", "load_recipe", "parse_train_config", "train_config_from"]

PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """The ``train:`` section of a recipe. Every field has a default; unknown keys are errors."""

    epochs: int | None = None  # passes over the training set; ``max_steps`` caps it when both are given
    max_steps: int | None = None  # optimizer steps; one of ``epochs`` and ``max_steps`` is required
    batch_size: int = 32  # samples per optimizer step per process
    lr: float = 1e-3  # peak learning rate of AdamW
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup: int = 0  # steps of linear warm-up before the cosine decay
    min_lr_ratio: float = 0.0  # the cosine decays to lr * min_lr_ratio
    grad_accum: int = 1  # micro-batches per step (must divide batch_size)
    grad_clip: float | None = 1.0  # max global gradient norm; null disables clipping
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast where the device supports it)
    seed: int = 0
    checkpoint_every: int = 0  # steps between checkpoints; 0: only the final one
    keep_last: int = 3  # complete checkpoints kept on disk
    log_every: int = 10  # steps between CSV / TensorBoard rows
    num_workers: int = 0  # DataLoader worker processes
    threads: int | None = None  # torch intra-op threads per process; null keeps torch's default (tiny models: 1)
    out_dir: str | None = None  # default runs/<task>; ``xmodal train --out`` overrides it
    strategy: str = "ddp"  # ddp | fsdp (FSDP2 ``fully_shard``), used when launched by torchrun
    evaluate: bool = True  # run ``bundle.evaluate`` on the validation set at the end (rank 0)
    eval_every: int = 0  # steps between evaluations during training (best checkpoint kept); 0: only at the end
    patience: int = 0  # early stopping: evaluations without a better primary metric before training stops; 0: never
    max_seconds: float | None = None  # wall-time guard: stop after this many seconds of training; null: none
    tensorboard: bool = True
    progress: bool = True  # progress bar on rank 0
    elastic_resume: bool = False  # allow --resume with another number of processes (schedule and data order change)
    sample_every: int = 0  # steps between samples written to <out_dir>/samples/ (tasks that generate); 0: never
    sample_n: int = 16  # samples drawn each time (from train.seed, so every time from the same noise)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum


def parse_train_config(section: dict[str, Any] | None) -> TrainConfig:
    """Validate a recipe's ``train:`` mapping into a :class:`TrainConfig`; errors name ``train.<key>``."""
    cfg = parse_section(TrainConfig, section, "train")

    if cfg.epochs is None and cfg.max_steps is None:
        raise ConfigError("train.epochs / train.max_steps: set at least one of them")
    for key in ("epochs", "max_steps", "batch_size", "grad_accum"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {value}")
    for key in ("warmup", "checkpoint_every", "num_workers", "eval_every", "patience", "sample_every"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"train.{key}: must be >= 0, got {getattr(cfg, key)}")
    if cfg.patience and not cfg.eval_every:
        raise ConfigError("train.patience: early stopping needs train.eval_every > 0 (evaluations to compare)")
    if cfg.max_seconds is not None and cfg.max_seconds <= 0:
        raise ConfigError(f"train.max_seconds: must be > 0 or null, got {cfg.max_seconds}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"train.threads: must be >= 1 or null, got {cfg.threads}")
    for key in ("log_every", "keep_last", "sample_n"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {getattr(cfg, key)}")
    if cfg.batch_size % cfg.grad_accum:
        raise ConfigError(
            f"train.grad_accum: {cfg.grad_accum} must divide train.batch_size ({cfg.batch_size}) into equal micro-batches"
        )
    if cfg.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {cfg.lr}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be >= 0, got {cfg.weight_decay}")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        raise ConfigError(f"train.min_lr_ratio: must be in [0, 1], got {cfg.min_lr_ratio}")
    if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
        raise ConfigError(f"train.betas: expected two numbers in [0, 1), got {cfg.betas}")
    if cfg.grad_clip is not None and cfg.grad_clip <= 0:
        raise ConfigError(f"train.grad_clip: must be > 0 or null, got {cfg.grad_clip}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"train.precision: expected one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"train.strategy: expected one of {', '.join(STRATEGIES)}, got {cfg.strategy!r}")
    return cfg


def train_config_from(cfg: dict[str, Any] | TrainConfig) -> TrainConfig:
    """Accept a whole recipe (its ``train:`` section is validated) or an already validated TrainConfig."""
    if isinstance(cfg, TrainConfig):
        return cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"expected a recipe mapping or TrainConfig, got {type(cfg).__name__}")
    return parse_train_config(cfg.get("train"))
