"""Hybrid attention network with attentive MMIL pooling for audio-visual video parsing (Tian et al., ECCV 2020;
``MMIL_Net`` in YapengTian/AVVP-ECCV20 ``nets/net_audiovisual.py``), trained from video-level labels only.

- Inputs, the official features: audio ``(N, 10, 128)`` VGGish, visual ``(N, 80, 2048)`` ResNet-152 at 8 fps
  (projected, then average-pooled in groups of 8 to 10 segments), spatio-temporal ``(N, 10, 512)`` R(2+1)D-18
  (projected, concatenated with the pooled 2-D stream, fused by a linear layer).
- Hybrid attention, per modality: self-attention plus cross-modal attention to the other modality, added to the
  input, LayerNorm, feed-forward with a residual, LayerNorm. As the reference, one layer (shared weights) serves
  both modalities; with ``layers > 1`` each layer takes the previous layer's outputs.
- A shared classifier gives per-segment, per-modality probabilities ``(N, T, 2, C)``; attentive MMIL pooling
  weighs them by a softmax over time and a softmax over the two modalities into the video-level probability.

``evidence_columns`` (not in the reference; scene clips) adds per-segment class evidence ``(N, T, F, K)`` to each
modality's segment logits through a :class:`xmodal.tasks.models.evidence.TiedEvidenceHead` per modality (one weight
vector shared by all classes), before the sigmoid; the pooling and the loss are unchanged.

:func:`han_loss` is the reference's objective: BCE on the video label plus BCE of each modality's pooled
probability, the visual target label-smoothed to ``0.9 y + 0.05``. :func:`xmodal.metrics.avvp.avvp_postprocess`
turns ``frame_prob`` and ``video_prob`` into the predictions the official evaluation scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.tasks.models.evidence import TiedEvidenceHead

__all__ = ["HANLayer", "HANParser", "han_loss"]


class HANLayer(nn.Module):
    """``forward(query (N, T, d), other (N, T', d)) -> (N, T, d)``: self- plus cross-modal attention (post-norm)."""

    def __init__(self, dim: int = 512, heads: int = 1, ff_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop_cross, self.drop_self, self.drop_ff = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        cross = self.cross_attn(query, other, other, need_weights=False)[0]
        own = self.self_attn(query, query, query, need_weights=False)[0]
        x = self.norm1(query + self.drop_cross(cross) + self.drop_self(own))
        return self.norm2(x + self.drop_ff(self.ff(x)))


class HANParser(nn.Module):
    """``forward(audio (N, T, audio_dim), visual (N, T * pool, visual_dim), motion (N, T, motion_dim), acoustic,
    evidence (N, T, evidence_dim, K) | None)`` ->
    ``{"video_prob": (N, C), "audio_prob": (N, C), "visual_prob": (N, C), "frame_prob": (N, T, 2, C)}``
    (index 0 of the modality axis is audio). ``acoustic_dim > 0`` adds per-segment acoustic descriptors
    (:func:`xmodal.data.acoustic.segment_acoustic_features`) to the
    audio stream."""

    def __init__(self, num_classes: int = 25, audio_dim: int = 128, visual_dim: int = 2048, motion_dim: int = 512,
                 dim: int = 512, heads: int = 1, ff_dim: int = 512, layers: int = 1, dropout: float = 0.1,
                 visual_pool: int = 8, acoustic_dim: int = 0, evidence_dim: int = 0,
                 evidence_columns: Sequence[int] | None = None) -> None:
        super().__init__()
        self.visual_pool, self.acoustic_dim = visual_pool, acoustic_dim
        self.dims = (audio_dim, visual_dim, motion_dim)
        self.fc_a = nn.Linear(audio_dim + acoustic_dim, dim)
        self.fc_v = nn.Linear(visual_dim, dim)
        self.fc_st = nn.Linear(motion_dim, dim)
        self.fc_fusion = nn.Linear(2 * dim, dim)
        self.layers = nn.ModuleList(HANLayer(dim, heads, ff_dim, dropout) for _ in range(layers))
        self.fc_prob = nn.Linear(dim, num_classes)
        self.fc_frame_att = nn.Linear(dim, num_classes)
        self.fc_av_att = nn.Linear(dim, num_classes)
        self.evidence_heads: nn.ModuleList | None = None
        if evidence_dim:
            if evidence_columns is None or len(evidence_columns) != num_classes:
                raise ShapeError(f"evidence_columns: one per class ({num_classes}) with evidence_dim > 0",
                                 source="HANParser")
            self.evidence_heads = nn.ModuleList(TiedEvidenceHead(evidence_dim, evidence_columns) for _ in range(2))

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, motion: torch.Tensor,
                acoustic: torch.Tensor | None = None, evidence: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n, t = audio.shape[:2]
        if (audio.shape[2], visual.shape[2], motion.shape[2]) != self.dims or visual.shape[:2] != (
                n, t * self.visual_pool) or motion.shape[:2] != (n, t):
            raise ShapeError(f"expected audio (N, T, {self.dims[0]}), visual (N, T*{self.visual_pool}, "
                             f"{self.dims[1]}), motion (N, T, {self.dims[2]}); got {tuple(audio.shape)}, "
                             f"{tuple(visual.shape)}, {tuple(motion.shape)}", source="HANParser")
        if self.acoustic_dim:
            if acoustic is None or acoustic.shape != (n, t, self.acoustic_dim):
                raise ShapeError(f"expected acoustic features (N, T, {self.acoustic_dim})", source="acoustic")
            audio = torch.cat([audio, acoustic], dim=-1)
        x_a = self.fc_a(audio)
        frames = self.fc_v(visual)  # (N, T*pool, d), then the mean of each group of `pool` frames
        x_v = frames.reshape(n, t, self.visual_pool, -1).mean(dim=2)
        x_v = self.fc_fusion(torch.cat([x_v, self.fc_st(motion)], dim=-1))
        for layer in self.layers:
            x_a, x_v = layer(x_a, x_v), layer(x_v, x_a)
        x = torch.stack([x_a, x_v], dim=2)  # (N, T, 2, d)
        logits = self.fc_prob(x)
        if self.evidence_heads is not None:
            if evidence is None or evidence.shape[:2] != (n, t):
                raise ShapeError("expected evidence (N, T, F, K)", source="evidence")
            logits = logits + torch.stack([head(evidence) for head in self.evidence_heads], dim=2)
        frame_prob = torch.sigmoid(logits)
        frame_att = torch.softmax(self.fc_frame_att(x), dim=1)  # over time
        av_att = torch.softmax(self.fc_av_att(x), dim=2)  # over the two modalities
        temporal = frame_att * frame_prob
        return {"video_prob": (temporal * av_att).sum(dim=2).sum(dim=1), "audio_prob": temporal[:, :, 0].sum(dim=1),
                "visual_prob": temporal[:, :, 1].sum(dim=1), "frame_prob": frame_prob}


def han_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor, visual_smoothing: float = 0.9) -> torch.Tensor:
    """BCE(video) + BCE(audio pooled, y) + BCE(visual pooled, smoothed y), probabilities clamped to [1e-7, 1 - 1e-7]
    as main_avvp.py; ``labels`` are the ``(N, C)`` video-level 0/1 labels."""
    y = labels.to(outputs["video_prob"].dtype)
    smoothed = visual_smoothing * y + (1 - visual_smoothing) * 0.5
    def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), target)

    return bce(outputs["audio_prob"], y) + bce(outputs["visual_prob"], smoothed) + bce(outputs["video_prob"], y)
