"""Task heads: classification (per clip or per segment), interval and box regression, localisation heatmaps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError


def _mlp(in_dim: int, out_dim: int, hidden: int | None, dropout: float) -> nn.Module:
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


class ClassifierHead(nn.Module):
    """``(batch, in_dim) -> (batch, num_classes)`` logits; an optional hidden layer."""

    def __init__(
        self, in_dim: int, num_classes: int, hidden: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.net = _mlp(in_dim, num_classes, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SegmentClassifierHead(nn.Module):
    """One label per segment, e.g. AVE's 10 one-second segments: ``(batch, segments, in_dim)`` ->
    ``(batch, segments, num_classes)``. Optionally a bidirectional GRU first lets segments see their context."""

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int | None = None,
        temporal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.temporal = (
            nn.GRU(in_dim, in_dim // 2, batch_first=True, bidirectional=True) if temporal else None
        )
        feat = 2 * (in_dim // 2) if temporal else in_dim
        self.net = _mlp(feat, num_classes, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ShapeError(
                f"expected (batch, segments, dim), got {tuple(x.shape)}", source="SegmentClassifierHead"
            )
        if self.temporal is not None:
            x, _ = self.temporal(x)
        return self.net(x)


class IntervalHead(nn.Module):
    """Temporal grounding: ``(batch, in_dim) -> (batch, 2)`` normalised ``(start, end)`` in [0, 1] with
    start <= end (a sigmoid centre and a sigmoid length, clipped to the clip)."""

    def __init__(self, in_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.net = _mlp(in_dim, 2, hidden, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre, length = self.net(x).sigmoid().unbind(-1)
        start = (centre - length / 2).clamp(0.0, 1.0)
        end = (centre + length / 2).clamp(0.0, 1.0)
        return torch.stack([start, end], dim=-1)


class BoxHead(nn.Module):
    """Visual grounding: ``(batch, in_dim) -> (batch, 4)`` box ``(cx, cy, w, h)`` normalised by the image size,
    each through a sigmoid (as DETR's box head)."""

    def __init__(self, in_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.net = _mlp(in_dim, 4, hidden, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).sigmoid()


def box_cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` centre/size boxes to corner boxes ``(x0, y0, x1, y1)``."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


class HeatmapHead(nn.Module):
    """Sound-source localisation map: the cosine similarity between an audio embedding ``(batch, dim)`` and every
    position of a visual feature map ``(batch, C, H, W)`` (projected to ``dim``), as in Senocak et al. 2018 /
    LVS (Chen et al. 2021). Returns logits ``(batch, H, W)``, or ``(batch, out_size...)`` bilinearly resized;
    apply a sigmoid for a map in [0, 1]."""

    def __init__(
        self,
        visual_channels: int,
        audio_dim: int,
        temperature: float = 0.07,
        out_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(visual_channels, audio_dim, kernel_size=1)
        self.temperature, self.out_size = temperature, out_size

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if visual.dim() != 4 or audio.dim() != 2 or visual.shape[0] != audio.shape[0]:
            raise ShapeError(
                f"expected visual (batch, C, H, W) and audio (batch, dim), got {tuple(visual.shape)} "
                f"and {tuple(audio.shape)}",
                source="HeatmapHead",
            )
        v = F.normalize(self.proj(visual), dim=1)  # (b, dim, H, W)
        a = F.normalize(audio, dim=-1)
        sim = torch.einsum("bchw,bc->bhw", v, a) / self.temperature
        if self.out_size is not None:
            sim = F.interpolate(sim[:, None], size=self.out_size, mode="bilinear", align_corners=False)[:, 0]
        return sim
