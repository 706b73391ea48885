"""A task's own step: the :class:`~xmodal.tasks.base.Phase` list of a bundle, one AdamW per phase, stepped in turn.

Each phase is an ordinary training step of the trainer (the forward through the DDP / FSDP2 wrapper, gradient
accumulation, the NaN check naming the step, the grad scaler, global-norm clipping), restricted to the phase's
parameters: every gradient is cleared before a phase, so a generator phase that backpropagates through the
discriminator leaves nothing behind for the discriminator's next step. Every phase's optimizer and schedule go
into the checkpoint (torch's state-dict API keys them by parameter name), so a killed run resumes bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.tasks.base import PHASE_KEY, Batch, Phase
from xmodal.train import distributed as xdist
from xmodal.train.config import TrainConfig
from xmodal.train.optim import named_param_groups


def check_phases(phases: list[Phase]) -> None:
    """Phases have distinct names, a parameter prefix and ``every >= 1``."""
    names = [p.name for p in phases]
    if not phases or len(set(names)) != len(names):
        raise ConfigError(f"task phases: expected one or more phases with distinct names, got {names}")
    for p in phases:
        if not p.params or isinstance(p.params, str):
            raise ConfigError(f"phase {p.name!r}: params must be a tuple of parameter-name prefixes, got {p.params!r}")
        if p.every < 1:
            raise ConfigError(f"phase {p.name!r}: every must be >= 1, got {p.every}")


def build_optimizers(model: nn.Module, phases: list[Phase], tc: TrainConfig) -> list[torch.optim.AdamW]:
    """One AdamW per phase over the trainable parameters its prefixes select (no decay on biases and norms);
    a parameter selected by two phases, or a phase that selects none, is a ConfigError."""
    check_phases(phases)
    named = [(n, p) for n, p in xdist.unwrap(model).named_parameters() if p.requires_grad]
    owner: dict[str, str] = {}
    optimizers = []
    for phase in phases:
        mine = [(n, p) for n, p in named if n.startswith(tuple(phase.params))]
        if not mine:
            raise ConfigError(f"phase {phase.name!r}: no trainable parameter starts with {', '.join(phase.params)}")
        for n, _ in mine:
            if n in owner:
                raise ConfigError(f"phase {phase.name!r}: parameter {n!r} belongs to phase {owner[n]!r} already")
            owner[n] = phase.name
        decay = tc.weight_decay if phase.weight_decay is None else phase.weight_decay
        betas = phase.betas or (tc.betas[0], tc.betas[1])
        optimizers.append(torch.optim.AdamW(named_param_groups(mine, decay), lr=phase.lr or tc.lr,
                                            betas=(float(betas[0]), float(betas[1])), weight_decay=decay))
    return optimizers


def phased_step(
    model: nn.Module,
    phases: list[Phase],
    optimizers: list[torch.optim.Optimizer],
    schedulers: list[torch.optim.lr_scheduler.LRScheduler],
    batch: Batch,
    tc: TrainConfig,
    step: int,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager],
    scaler: torch.amp.GradScaler | None,
    sync: bool,
) -> tuple[dict[str, float], float]:
    """Step ``step`` (1-based) of a phased task: ``({phase: loss}, gradient norm of the last phase)``.

    Phases that ``every`` skips at this step are left out of the returned losses; every schedule advances once
    per step whichever phases ran, so learning rates follow the global step."""
    from xmodal.train.loop import accumulate_naive, split_batch

    losses: dict[str, float] = {}
    grad_norm = float("nan")
    scale = scaler.scale if scaler is not None else (lambda t: t)
    for phase, optimizer in zip(phases, optimizers):
        if step % phase.every:
            continue
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        micro = split_batch({**batch, PHASE_KEY: phase.name}, tc.batch_size, tc.grad_accum)
        losses[phase.name] = accumulate_naive(model, phase.loss, micro, step=step, autocast=autocast, scale=scale,
                                              sync=sync)
        xdist.reduce_replicated_grads(model)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if tc.grad_clip is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        for scheduler in schedulers:
            scheduler.step()
    return losses, grad_norm


def log_row(phases: list[Phase], window: list[dict[str, float]]) -> dict[str, Any]:
    """The CSV columns of a phased run: ``loss`` (the sum of the phases' mean losses over the window) and one
    ``loss_<phase>`` each (NaN when the phase did not run in the window)."""
    row: dict[str, Any] = {}
    for phase in phases:
        values = [w[phase.name] for w in window if phase.name in w]
        row[f"loss_{phase.name}"] = sum(values) / len(values) if values else math.nan
    finite = [v for v in row.values() if math.isfinite(v)]
    return {"loss": sum(finite), **row}
