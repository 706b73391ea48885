"""AdamW parameter groups: weight decay on weight matrices and kernels only.

Decaying a bias, a normalisation gain or the logit scale pulls it towards 0, which is not a prior anyone wants
(a LayerNorm gain of 0 switches the layer off; a logit scale of 0 makes every similarity equal). open_clip's
``main.py`` puts parameters with fewer than two dimensions, and any named ``logit_scale``, in a group with
``weight_decay = 0``; so does this module. The name rule also catches a logit scale stored with a shape of
``(1,)`` or ``(1, 1)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

NO_DECAY_NAMES = ("logit_scale",)


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether ``param`` (called ``name`` in ``model.named_parameters()``) takes weight decay."""
    return param.ndim >= 2 and not any(key in name for key in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW groups over the trainable parameters: ``decay`` (``weight_decay``) and ``no_decay`` (0).

    Groups carry a ``name`` so that a checkpoint's JSON state says which is which; an empty group is dropped.
    """
    return named_param_groups(((n, p) for n, p in model.named_parameters() if p.requires_grad), weight_decay)


def named_param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, object]]:
    """:func:`param_groups` over given ``(name, parameter)`` pairs (one optimizer of several, e.g. a GAN's)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in named:
        (decay if decays(name, param) else no_decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_adamw(model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``model``."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, weight_decay=weight_decay)
