"""A proposal-free boundary regressor for temporal localisation by language, in the manner of ABLR (Yuan et al.
2019, "To find where you talk"): clip features attend to the sentence, a bidirectional GRU gives every clip its
context, attention pooling over the clips summarises the video for the query, and a head regresses the moment
(start, end) as fractions of the video (:class:`xmodal.nn.heads.IntervalHead`). No proposals, no NMS.

Inputs: ``clips`` ``(batch, T, video_dim)`` (Charades-STA: I3D 1024 or C3D 4096 per clip), ``clip_mask``
``(batch, T)``, ``words`` ``(batch, L, text_dim)`` (GloVe: 300) or ``(batch, L)`` ids with ``vocab_size``,
``word_mask`` ``(batch, L)``; True = valid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.rnn import BiGRU
from xmodal.nn.fusion import CrossModalAttention
from xmodal.nn.heads import IntervalHead


class BoundaryRegressor(nn.Module):
    def __init__(self, video_dim: int = 1024, text_dim: int = 300, dim: int = 256, heads: int = 4,
                 vocab_size: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even (two GRU directions of dim / 2), got {dim}")
        self.embed = nn.Embedding(vocab_size, text_dim, padding_idx=0) if vocab_size else None
        self.video = nn.Linear(video_dim, dim)
        self.text = nn.Linear(text_dim, dim)
        self.attend = CrossModalAttention(dim, dim, heads, dropout)
        self.context = BiGRU(dim, hidden=dim // 2)
        self.score = nn.Linear(dim, 1)
        self.head = IntervalHead(dim, hidden=dim)

    def forward(self, clips: torch.Tensor, words: torch.Tensor, clip_mask: torch.Tensor | None = None,
                word_mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> ``(batch, 2)`` (start, end) as fractions of the video, start <= end."""
        w = self.embed(words) if self.embed is not None else words
        if clips.dim() != 3 or w.dim() != 3 or clips.shape[0] != w.shape[0]:
            raise ShapeError(f"expected clips (batch, T, D) and words (batch, L, D) or ids, got "
                             f"{tuple(clips.shape)} and {tuple(words.shape)}", "BoundaryRegressor")
        v = self.attend(self.video(clips), self.text(w), word_mask, clip_mask)  # (b, T, dim)
        h, _ = self.context.forward_all(v, clip_mask)
        logits = self.score(h)[..., 0]  # (b, T)
        if clip_mask is not None:
            logits = logits.masked_fill(~clip_mask.bool(), float("-inf"))
        pooled = (logits.softmax(dim=1)[..., None] * h).sum(1)
        return self.head(pooled)


def boundary_loss(pred: torch.Tensor, target: torch.Tensor, iou_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Smooth L1 on the (start, end) fractions plus ``iou_weight * (1 - tIoU)`` of the predicted and true moments."""
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ShapeError(f"expected (batch, 2) moments, got {tuple(pred.shape)} and {tuple(target.shape)}", "moments")
    l1 = F.smooth_l1_loss(pred, target)
    inter = (torch.minimum(pred[:, 1], target[:, 1]) - torch.maximum(pred[:, 0], target[:, 0])).clamp_min(0)
    union = (torch.maximum(pred[:, 1], target[:, 1]) - torch.minimum(pred[:, 0], target[:, 0])).clamp_min(1e-6)
    iou = (inter / union).mean()
    return {"loss": l1 + iou_weight * (1 - iou), "l1": l1, "tiou": iou}
