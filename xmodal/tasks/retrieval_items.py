"""Frozen item features for the retrieval task (``model.item: sprite_encoder``).

The item towers of ``model.item: cnn`` learn from scratch on a training split of about a thousand small images,
which leaves both the model and the bag-of-words baseline a weak item space. ``sprite_encoder`` gives both the
same frozen trunk instead, as CLIP-style retrieval does with a pretrained image tower: the ``64``-channel map of
:class:`xmodal.data.synth.sprite_encoder.SpriteEncoder` (the CNN trained here on the scene vocabulary's own
sprites, the stand-in for an ImageNet trunk, since no weights can be downloaded). The encoder's classifier is
trained to ignore tint (a cell's target is its class), and the galleries' hard negatives differ in one
object's colour, so every cell also gets raw colour statistics: the mean and standard deviation of R, G and B
over the cell's pixels. Features are computed once per gallery and kept in the transform cache, keyed by the
pixels, the input side and the encoder's weights.

:class:`FrozenGridTower` is the trainable head: a per-cell MLP (1 x 1 convolutions) and a linear map of the
flattened grid, so where an object lies stays in the embedding (a mirrored layout gives another vector).
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError

ITEM_TOWERS = ("cnn", "sprite_encoder")
COLOUR_STATS = 6  # per cell: mean and standard deviation of R, G, B


def _grid_side(input_size: int) -> int:
    """The sprite encoder's map side for an input side: five 3 x 3 convolutions, four of stride 2."""
    side = input_size
    for _ in range(4):
        side = (side - 1) // 2 + 1
    return side


def _colour_stats(x: torch.Tensor, side: int) -> torch.Tensor:
    """``(n, 3, H, W)`` in [0, 1] -> ``(n, 6, side, side)``: per cell the mean and standard deviation of each
    channel (adaptive pooling, so cells cover the image as the encoder's map does)."""
    mean = F.adaptive_avg_pool2d(x, side)
    sq = F.adaptive_avg_pool2d(x * x, side)
    return torch.cat([mean, (sq - mean * mean).clamp_min(0).sqrt()], dim=1)


@torch.no_grad()
def sprite_grid_features(images: torch.Tensor, input_size: int, cache: Any,
                         batch_size: int = 128) -> torch.Tensor:
    """``(N, 3, S, S)`` uint8 images -> ``(N, 64 + 6, g, g)`` float16: the frozen sprite encoder's map of the
    images resized to ``input_size`` (``g = ceil(input_size / 16)``) and each cell's colour statistics, from
    the transform cache when these pixels were seen before."""
    from xmodal.data.synth import sprite_encoder as se
    from xmodal.transforms.cache import make_key

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ShapeError(f"expected (N, 3, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}")
    content = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    key = make_key(content, "retrieval_sprite_grid", {"input_size": input_size, "version": 1},
                   weights=se.weights_key())
    side = _grid_side(input_size)

    def compute() -> dict[str, torch.Tensor]:
        encoder = se.load_sprite_encoder()
        parts = []
        for a in range(0, len(images), batch_size):
            x = images[a: a + batch_size].float() / 255.0
            fmap = encoder(x, size=(input_size, input_size))["map"]  # (b, 64, g, g)
            parts.append(torch.cat([fmap, _colour_stats(x, side)], dim=1).half())
        return {"features": torch.cat(parts)}

    return cache.get_or_compute(key, compute)["features"]


def feature_channels() -> int:
    """Channels of :func:`sprite_grid_features`."""
    from xmodal.data.synth.sprite_encoder import CHANNELS

    return CHANNELS + COLOUR_STATS


class FrozenGridTower(nn.Module):
    """``(b, C, g, g)`` frozen features -> ``(b, out_dim)``: per-channel batch normalisation (the map's and the
    colour statistics' scales differ), a per-cell MLP to ``hidden`` channels, then one linear map of the
    flattened grid (position kept)."""

    def __init__(self, in_channels: int, side: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.cell = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, hidden, 1),
                                  nn.GELU())
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden * side * side, out_dim)
        self.side = side
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.side, self.side):
            raise ShapeError(f"expected a {self.side} x {self.side} feature grid, got {tuple(x.shape[-2:])}")
        return self.proj(self.drop(self.cell(self.norm(x)).flatten(1)))


def build_item_tower(input_size: int, hidden: int, out_dim: int, dropout: float) -> FrozenGridTower:
    """The trainable head over :func:`sprite_grid_features` of images resized to ``input_size``."""
    return FrozenGridTower(feature_channels(), _grid_side(input_size), hidden, out_dim, dropout)
