"""The contract between a task and the trainer.

A task is a composition: a model (encoders by modality, fusion, head), a loss on the model's outputs, data and,
optionally, an evaluation. The trainer knows nothing else about the task.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.errors import ConfigError

Batch = dict[str, Any]
Outputs = dict[str, torch.Tensor]


@dataclass
class TaskBundle:
    """Everything the trainer needs.

    model: ``forward(batch) -> outputs``, a dict of tensors (for contrastive tasks, one embedding per modality).
    loss: ``(outputs, batch) -> scalar``. When ``coupled_loss`` is true the loss couples the samples of a batch
        (contrastive losses), so gradient accumulation caches embeddings instead of summing micro-batch losses.
    train_set / val_set: datasets of sample dicts; ``collate`` turns a list of them into a batch dict.
    evaluate: ``(model, dataset) -> {metric: value}``, run on ``val_set`` after training.
    """

    model: nn.Module
    loss: Callable[[Outputs, Batch], torch.Tensor]
    train_set: Dataset
    collate: Callable[[list[dict[str, Any]]], Batch]
    val_set: Dataset | None = None
    evaluate: Callable[[nn.Module, Dataset], dict[str, float]] | None = None
    coupled_loss: bool = False


def build_task(cfg: dict[str, Any]) -> TaskBundle:
    """Build the task named by ``cfg['task']`` (a module in ``xmodal.tasks``) from the whole recipe ``cfg``."""
    name = cfg.get("task")
    if not isinstance(name, str) or not name:
        raise ConfigError("recipe key 'task' must name a module of xmodal.tasks, e.g. 'trimodal_retrieval'")
    try:
        module = importlib.import_module(f"xmodal.tasks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"xmodal.tasks.{name}":
            raise ConfigError(f"recipe key 'task': no task named {name!r} in xmodal.tasks") from exc
        raise
    return module.build(cfg)
