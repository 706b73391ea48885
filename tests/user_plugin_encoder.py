"""A user's encoder outside xmodal, plugged into a plan by its dotted path (tests of xmodal.models)."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.modalities import ModalitySpec


class MeanPoolEncoder(nn.Module):
    """Mean over every axis but the batch, then a linear map to ``width``."""

    def __init__(self, spec: ModalitySpec, width: int = 8) -> None:
        super().__init__()
        self.spec_name = spec.name
        self.linear = nn.Linear(1, width)
        self.out_dim = width

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x.float().flatten(1).mean(1, keepdim=True))


NOT_CALLABLE = 3
