"""The contract between a task and the trainer.

A task is a composition: a model (encoders by modality, fusion, head), a loss on the model's outputs, data and,
optionally, an evaluation. The trainer knows nothing else about the task.

A task may define its own step instead of the single loss (generative training): a list of :class:`Phase`, each an
optimizer over some of the model's parameters and the loss it minimises, stepped in turn (a GAN's discriminator
then generator); ``after_step`` runs after every step (an EMA of weights kept inside the model, so that the
checkpoint saves and resumes it); ``generate`` writes samples (periodically into the run directory during
training, and for ``xmodal generate``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.errors import ConfigError

Batch = dict[str, Any]
Outputs = dict[str, torch.Tensor]
PHASE_KEY = "phase"  # the batch key that tells the model which phase of the task's step it is computing


@dataclass
class Phase:
    """One optimizer of a task's own step and the loss it minimises.

    The trainer calls ``loss(model(batch), batch)`` with ``batch["phase"] = name`` (so the model's forward knows
    what to compute, and data parallelism still sees one forward per phase), backpropagates, clips and steps
    this phase's AdamW over the parameters whose names start with one of ``params`` (names as in
    ``model.named_parameters()``; phases must not share a parameter). ``lr``, ``betas`` and ``weight_decay``
    default to the ``train:`` section's; the phase runs on steps that ``every`` divides (1: every step).
    """

    name: str
    loss: Callable[[Outputs, Batch], torch.Tensor]
    params: tuple[str, ...]
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    every: int = 1


@dataclass
class TaskBundle:
    """Everything the trainer needs.

    model: ``forward(batch) -> outputs``, a dict of tensors (for contrastive tasks, one embedding per modality).
    loss: ``(outputs, batch) -> scalar``. When ``coupled_loss`` is true the loss couples the samples of a batch
        (contrastive losses), so gradient accumulation caches embeddings instead of summing micro-batch losses.
    train_set / val_set: datasets of sample dicts; ``collate`` turns a list of them into a batch dict.
    evaluate: ``(model, dataset) -> {metric: value}``, run on ``val_set`` during (``train.eval_every``) and
        after training.
    primary / higher_is_better: the metric of ``evaluate`` that picks the best checkpoint.
    baselines: ``dataset -> {baseline name: {metric: value}}``, the references every run reports beside the model.
    predict: ``(model, dataset, path) -> path`` writes predictions in the task's format (``xmodal predict``).
    artifacts: JSON-able things the trained model needs to be used (label maps, vocabularies); the trainer
        writes them into the run directory.
    split: the name of ``val_set``'s split (reported in ``metrics.json``).
    phases: the task's own step (see :class:`Phase`); None: the single ``loss`` with one optimizer.
    after_step: ``(model, step) -> None`` called on the unwrapped model after every optimizer step (EMA updates).
    generate: ``(model, n, seed, out_dir) -> [paths]`` writes ``n`` samples drawn from ``seed`` into ``out_dir``
        in the task's modality's format (PNG, WAV, ...); the trainer calls it every ``train.sample_every`` steps
        into ``<run>/samples/step_<step>/``, ``xmodal generate`` on a trained run.
    modality: what ``generate`` writes (``image``, ``points``, ``audio``, ...), shown in ``report.html``.
    """

    model: nn.Module
    loss: Callable[[Outputs, Batch], torch.Tensor]
    train_set: Dataset
    collate: Callable[[list[dict[str, Any]]], Batch]
    val_set: Dataset | None = None
    evaluate: Callable[[nn.Module, Dataset], dict[str, float]] | None = None
    coupled_loss: bool = False
    primary: str | None = None
    higher_is_better: bool = True
    baselines: Callable[[Dataset], dict[str, dict[str, float]]] | None = None
    predict: Callable[[nn.Module, Dataset, Path], Path] | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    split: str = "val"
    phases: list[Phase] | None = None
    after_step: Callable[[nn.Module, int], None] | None = None
    generate: Callable[[nn.Module, int, int, Path], list[Path]] | None = None
    modality: str | None = None


def build_task(cfg: dict[str, Any], artifacts: dict[str, Any] | None = None) -> TaskBundle:
    """Build the task named by ``cfg['task']`` (a module of ``xmodal.tasks``, or a dotted path to a user's module
    exposing ``build(cfg) -> TaskBundle``) from the whole recipe ``cfg``.

    ``artifacts`` are those a trained run saved (label maps, vocabularies: :func:`xmodal.tasks.runs.load_trained`).
    A task whose ``build`` takes ``artifacts=`` uses them as saved instead of deriving them from the data again;
    for any other task, artifacts that the data now gives differently are a :class:`DataError` naming them (the
    weights' outputs would be read with another label map)."""
    import inspect
    import json

    from xmodal.config.recipe import resolve_task
    from xmodal.errors import DataError

    module = resolve_task(cfg.get("task"))
    check = getattr(module, "check", None)
    if callable(check):
        check(cfg)
    takes_artifacts = artifacts is not None and "artifacts" in inspect.signature(module.build).parameters
    bundle = module.build(cfg, artifacts=artifacts) if takes_artifacts else module.build(cfg)
    if not isinstance(bundle, TaskBundle):
        raise ConfigError(f"task: {cfg.get('task')!r}: build(cfg) returned {type(bundle).__name__}, not a TaskBundle")
    for name, saved in (artifacts or {}).items():
        if name in bundle.artifacts and json.loads(json.dumps(bundle.artifacts[name])) != saved:
            raise DataError(f"the data now gives another {name!r} than the trained run saved ({name}.json): the "
                            "data folder changed since training", source=f"{name}.json")
    return bundle
