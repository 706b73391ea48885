"""EVE-style visual entailment (Xie et al. 2019, "Visual Entailment: a novel task"): two attention branches,
the hypothesis attending to image regions and the regions attending to the hypothesis, each pooled and fused
for a three-way classifier (entailment, neutral, contradiction).

Inputs: ``regions`` ``(batch, R, visual_dim)`` (bottom-up features: 36 x 2048, or a ResNet grid 7 x 7 = 49 x
2048), ``text`` ``(batch, L, text_dim)`` word features (GloVe: 300) or ``(batch, L)`` ids with ``vocab_size``.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.rnn import BiLSTM
from xmodal.nn.fusion import CrossModalAttention
from xmodal.nn.heads import ClassifierHead


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class EVE(nn.Module):
    def __init__(self, visual_dim: int = 2048, text_dim: int = 300, dim: int = 256, heads: int = 4,
                 vocab_size: int | None = None, num_classes: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even (two LSTM directions of dim / 2), got {dim}")
        self.embed = nn.Embedding(vocab_size, text_dim, padding_idx=0) if vocab_size else None
        self.text = BiLSTM(text_dim, hidden=dim // 2)  # 2 * (dim // 2) states per word
        self.visual = nn.Linear(visual_dim, dim)
        self.text_to_image = CrossModalAttention(dim, dim, heads, dropout)
        self.image_to_text = CrossModalAttention(dim, dim, heads, dropout)
        self.head = ClassifierHead(2 * dim, num_classes, hidden=dim, dropout=dropout)

    def forward(self, regions: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None,
                region_mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> ``(batch, num_classes)`` logits."""
        words = self.embed(text) if self.embed is not None else text
        if regions.dim() != 3 or words.dim() != 3 or regions.shape[0] != words.shape[0]:
            raise ShapeError(f"expected regions (batch, R, D) and text (batch, L, D) or ids, got "
                             f"{tuple(regions.shape)} and {tuple(text.shape)}", "EVE")
        t, _ = self.text.forward_all(words, text_mask)  # (b, L, dim) per-word states
        v = self.visual(regions)
        t_att = self.text_to_image(t, v, region_mask, text_mask)  # words gather image evidence
        v_att = self.image_to_text(v, t, text_mask, region_mask)  # regions gather hypothesis evidence
        return self.head(torch.cat([_masked_mean(t_att, text_mask), _masked_mean(v_att, region_mask)], dim=-1))
