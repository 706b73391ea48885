"""CTRL (Gao et al. 2017, jiyanggao/TALL ``ctrl_model.py``): cross-modal temporal regression localiser.

A clip feature (the central clip with its pre- and post-context, C3D fc6: 3 x 4096) and a sentence embedding
(skip-thought: 4800) are projected to ``semantic_dim`` and L2-normalised; every (sentence, clip) pair of the
batch is combined as [v * s, v + s, v, s], and a two-layer 1x1 network gives three numbers per pair: the
alignment score and the start/end offsets of the clip to the moment."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError


class CTRL(nn.Module):
    def __init__(self, visual_dim: int = 3 * 4096, sentence_dim: int = 4800, semantic_dim: int = 1024,
                 hidden: int = 1000) -> None:
        super().__init__()
        self.visual = nn.Linear(visual_dim, semantic_dim)
        self.sentence = nn.Linear(sentence_dim, semantic_dim)
        self.infer = nn.Sequential(nn.Linear(4 * semantic_dim, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, clips: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
        """``clips`` (n_clips, visual_dim), ``sentences`` (n_sentences, sentence_dim) -> ``(n_sentences,
        n_clips, 3)``: [..., 0] alignment score, [..., 1:] (start, end) offsets."""
        if clips.dim() != 2 or sentences.dim() != 2:
            raise ShapeError(f"expected (n, dim) clips and sentences, got {tuple(clips.shape)} and "
                             f"{tuple(sentences.shape)}", "CTRL")
        v = F.normalize(self.visual(clips), dim=-1)  # (nc, s)
        s = F.normalize(self.sentence(sentences), dim=-1)  # (ns, s)
        vv = v[None].expand(s.shape[0], -1, -1)  # (ns, nc, s): row i is sentence i, as TALL tiles them
        ss = s[:, None].expand(-1, v.shape[0], -1)
        return self.infer(torch.cat([vv * ss, vv + ss, vv, ss], dim=-1))


def ctrl_loss(outputs: torch.Tensor, offsets: torch.Tensor, lambda_regression: float = 0.01,
              alpha: float | None = None) -> dict[str, torch.Tensor]:
    """TALL's ``compute_loss_reg`` on a batch of matching (sentence i, clip i) pairs: ``outputs`` (b, b, 3) from
    :class:`CTRL`, ``offsets`` (b, 2) the true (start, end) offsets of each clip. Alignment: ``log(1 + exp(m *
    score))`` with m = -1 on the diagonal and +1 elsewhere, weighted 1 + alpha on the diagonal and alpha off it
    (alpha = 1 / b), averaged; regression: mean absolute error of the diagonal's offsets, weighted 0.01."""
    b = outputs.shape[0]
    if outputs.shape != (b, b, 3) or offsets.shape != (b, 2):
        raise ShapeError(f"expected outputs (b, b, 3) and offsets (b, 2), got {tuple(outputs.shape)} and "
                         f"{tuple(offsets.shape)}", "ctrl_loss")
    alpha = 1.0 / b if alpha is None else alpha
    eye = torch.eye(b, dtype=outputs.dtype, device=outputs.device)
    sign = 1 - 2 * eye
    weight = eye + alpha
    align = (F.softplus(sign * outputs[..., 0]) * weight).mean()  # softplus(x) = log(1 + exp(x)), stably
    pred = outputs[..., 1:].diagonal(dim1=0, dim2=1).T  # (b, 2)
    regression = (pred - offsets).abs().mean()
    return {"loss": align + lambda_regression * regression, "alignment": align, "regression": regression}
