"""Mixture of Embedding Experts (Miech et al. 2018, "Learning a Text-Video Embedding from Incomplete and
Heterogeneous Data"): one gated embedding unit per video expert (appearance, motion, audio, face, ...) and per
expert on the text side, text-predicted mixture weights, and a similarity that renormalises the weights over the
experts a video actually has. Gated embedding unit: ``y = W1 x + b1``, ``z = y * sigmoid(W2 y + b2)``, L2-norm.

Inputs as the MEE release: ``experts`` {name: (batch, dim)} video features (e.g. appearance ResNet-152: 2048,
motion I3D: 1024, audio VGGish: 128, face: 128) with ``available`` {name: (batch,) bool}; ``text`` (batch, D)
pooled sentence features (the paper aggregates word2vec with NetVLAD; any pooled text tower fits).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import MissingModalityError, ShapeError


class GatedEmbeddingUnit(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.gate = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return F.normalize(y * torch.sigmoid(self.gate(y)), dim=-1)


class MEE(nn.Module):
    def __init__(self, expert_dims: Mapping[str, int], text_dim: int, dim: int = 256) -> None:
        super().__init__()
        self.names = list(expert_dims)
        self.video = nn.ModuleDict({n: GatedEmbeddingUnit(d, dim) for n, d in expert_dims.items()})
        self.text = nn.ModuleDict({n: GatedEmbeddingUnit(text_dim, dim) for n in self.names})
        self.weights = nn.Linear(text_dim, len(self.names))

    def forward(self, text: torch.Tensor, experts: Mapping[str, torch.Tensor],
                available: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``(n_text, n_video)`` similarities: ``s_ij = sum_e w_ie a_je <t_ie, v_je> / sum_e w_ie a_je``."""
        missing = [n for n in self.names if n not in experts]
        if missing:
            raise MissingModalityError(f"experts {missing} are missing; the batch holds {sorted(experts)}",
                                       "experts")
        n_video = experts[self.names[0]].shape[0]
        if text.dim() != 2 or any(experts[n].shape[0] != n_video for n in self.names):
            raise ShapeError("expected (n, dim) text and experts with one row per video", "MEE")
        w = self.weights(text).softmax(dim=-1)  # (n_text, experts)
        sims, present = [], []
        for n in self.names:
            sims.append(self.text[n](text) @ self.video[n](experts[n]).T)  # (n_text, n_video)
            a = torch.ones(n_video, device=text.device) if available is None else available[n].to(text.dtype)
            present.append(a)
        s = torch.stack(sims, dim=-1)  # (n_text, n_video, experts)
        a = torch.stack(present, dim=-1)[None]  # (1, n_video, experts)
        mix = w[:, None, :] * a  # a missing expert takes no weight; the others share its part
        return (mix * s).sum(-1) / mix.sum(-1).clamp_min(1e-12)


def max_margin_ranking_loss(sim: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """MEE's bidirectional max-margin ranking loss on a square similarity matrix (matching pairs on the
    diagonal): the mean over negatives of ``max(0, margin + s_ij - s_ii)`` and of ``max(0, margin + s_ji - s_ii)``."""
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ShapeError(f"expected a square similarity matrix, got {tuple(sim.shape)}", "sim")
    pos = sim.diagonal()[:, None]
    off = ~torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    rows = (margin + sim - pos).clamp_min(0)[off]
    cols = (margin + sim.T - pos).clamp_min(0)[off]
    n = sim.shape[0]
    return (rows.sum() + cols.sum()) / max(n * (n - 1), 1)
