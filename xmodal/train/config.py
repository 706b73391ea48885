"""Recipes: load a YAML recipe, apply ``--set key.sub=value`` overrides, validate the ``train:`` section.

A recipe is ``task: <module of xmodal.tasks>``, free sections for the task (``data:``, ``model:``, ...) that the
task validates itself, and a ``train:`` section described by :class:`TrainConfig`.

Batch semantics: ``batch_size`` is the number of samples one process uses for one optimizer step; with
``grad_accum: k`` that batch is split into ``k`` micro-batches of ``batch_size // k`` samples (so ``grad_accum``
trades memory for time and, for contrastive losses, does not change the result). Under ``torchrun`` each of the
``world_size`` processes takes its own ``batch_size`` samples per step.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xmodal.errors import ConfigError

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
    tensorboard: bool = True
    progress: bool = True  # progress bar on rank 0
    elastic_resume: bool = False  # allow --resume with another number of processes (schedule and data order change)

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.grad_accum


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a YAML recipe and apply ``key.sub=value`` overrides (values parsed as YAML: ``1e-3``, ``true``, ``[1, 2]``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from exc
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"recipe {path}: the top level must be a mapping of sections, got {type(cfg).__name__}")
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with each ``dotted.key=value`` set; missing intermediate sections are created."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. train.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from exc
        node = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}: {where} is a value ({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return cfg


def _check_type(key: str, value: Any, annotation: str) -> Any:
    """Validate one value against the (string) annotation of its TrainConfig field; ints are accepted as floats."""
    optional = annotation.endswith("| None")
    base = annotation.replace("| None", "").strip()
    if value is None:
        if optional:
            return None
        raise ConfigError(f"train.{key}: must be set ({base}), got null")
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"train.{key}: expected an integer, got {value!r}")
        return value
    if base == "float":
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 3e-4, without a dot, as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"train.{key}: expected a number, got {value!r}")
        return float(value)
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"train.{key}: expected true or false, got {value!r}")
        return value
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"train.{key}: expected a string, got {value!r}")
        return value
    if base == "list[float]":
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"train.{key}: expected a list of numbers, got {value!r}")
        return [float(v) for v in value]
    raise AssertionError(f"unhandled annotation {annotation}")  # a new field needs a case here


def parse_train_config(section: dict[str, Any] | None) -> TrainConfig:
    """Validate a recipe's ``train:`` mapping into a :class:`TrainConfig`; errors name ``train.<key>``."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise ConfigError(f"train: expected a mapping of settings, got {section!r}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(f"train.{key}: unknown setting; known settings are {', '.join(sorted(fields))}")
        values[key] = _check_type(key, value, str(fields[key].type))
    cfg = TrainConfig(**values)

    if cfg.epochs is None and cfg.max_steps is None:
        raise ConfigError("train.epochs / train.max_steps: set at least one of them")
    for key in ("epochs", "max_steps", "batch_size", "grad_accum"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise ConfigError(f"train.{key}: must be >= 1, got {value}")
    for key in ("warmup", "checkpoint_every", "num_workers"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"train.{key}: must be >= 0, got {getattr(cfg, key)}")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"train.threads: must be >= 1 or null, got {cfg.threads}")
    for key in ("log_every", "keep_last"):
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
