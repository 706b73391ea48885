"""Class evidence scored with weights shared by every class (the AVE and AVVP models' evidence path on scene
clips, not in the reference models).

The scene encoders name the task's own vocabulary, so each class has its own evidence column (heard, seen, both);
what turns evidence into an event is the same for every class. One weight vector for all classes learns it once:
a class seen in few training clips, or none, is found as well as a frequent one, where a per-class linear
classifier of a few dozen clips learns only the classes it saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.errors import ShapeError

__all__ = ["TiedEvidenceHead"]


class TiedEvidenceHead(nn.Module):
    """``forward(evidence (..., F, K)) -> (..., C)`` logits: class ``c``'s logit is ``w . evidence[..., :, k_c] +
    b_c`` with one ``w`` (``F``) shared by all classes, where ``k_c = columns[c]``; a class with ``k_c < 0``
    (background, or a class without evidence) has its bias alone. ``w`` starts at zero: the head adds nothing until
    training finds the evidence useful."""

    def __init__(self, features: int, columns: Sequence[int]) -> None:
        super().__init__()
        if features < 1 or not columns or max(columns) < 0:
            raise ShapeError(f"TiedEvidenceHead: need features >= 1 and a column >= 0, got {features} and "
                             f"{list(columns)}", source="evidence")
        self.features, self.width = features, max(columns) + 1
        self.weight = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(len(columns)))
        self.columns: torch.Tensor
        self.has_column: torch.Tensor
        self.register_buffer("columns", torch.tensor([max(k, 0) for k in columns]))
        self.register_buffer("has_column", torch.tensor([float(k >= 0) for k in columns]))

    def forward(self, evidence: torch.Tensor) -> torch.Tensor:
        if evidence.dim() < 2 or evidence.shape[-2] != self.features or evidence.shape[-1] < self.width:
            raise ShapeError(f"expected evidence (..., {self.features}, >= {self.width}), got {tuple(evidence.shape)}",
                             source="evidence")
        per_column = torch.einsum("...fk,f->...k", evidence, self.weight)
        return per_column[..., self.columns] * self.has_column + self.bias
