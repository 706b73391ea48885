"""PointNet (Qi et al. 2017) for point sets: a shared per-point MLP and a symmetric max pool, so the output does
not depend on the order of the points; an optional input transform (T-Net) predicts a ``k x k`` matrix, started
at the identity, that aligns the input coordinates."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.tokens import EncoderTokens, full_mask


def _shared_mlp(dims: Sequence[int]) -> nn.Sequential:
    """Per-point MLP as 1x1 convs on ``(batch, C, N)``; LayerNorm over channels keeps points independent."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Conv1d(a, b, 1), _PointNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


class _PointNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, C, N)
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Max over points ``(batch, C, N) -> (batch, C)``; padded points (mask False) never win."""
    if mask is not None:
        x = x.masked_fill(~mask[:, None, :], float("-inf"))
    return x.max(dim=-1).values


class TNet(nn.Module):
    """Predicts a ``(batch, k, k)`` transform from the point set; the last layer starts at zero so the transform
    starts as the identity."""

    def __init__(self, k: int = 3, widths: Sequence[int] = (64, 128, 256)) -> None:
        super().__init__()
        self.k = k
        self.mlp = _shared_mlp([k, *widths])
        last = nn.Linear(128, k * k)
        self.head = nn.Sequential(nn.Linear(widths[-1], 128), nn.GELU(), last)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        g = masked_max(self.mlp(x), mask)
        return self.head(g).view(-1, self.k, self.k) + torch.eye(self.k, device=x.device, dtype=x.dtype)


class PointNetEncoder(nn.Module):
    """``(batch, num_points, in_dim)`` (xyz first, then optional per-point features) and an optional
    ``(batch, num_points)`` mask (True = real point) -> ``(batch, out_dim)``. ``input_transform`` applies a T-Net
    to the xyz coordinates. ``forward_points`` returns the per-point features ``(batch, num_points, C)``."""

    def __init__(
        self,
        in_dim: int = 3,
        widths: Sequence[int] = (64, 128, 256),
        out_dim: int | None = None,
        input_transform: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.tnet = TNet(3) if input_transform else None
        self.mlp = _shared_mlp([in_dim, *widths])
        self.proj = nn.Identity() if out_dim is None else nn.Linear(widths[-1], out_dim)
        self.out_dim = widths[-1] if out_dim is None else out_dim

    def forward_points(self, points: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if points.dim() != 3 or points.shape[-1] != self.in_dim:
            raise ShapeError(
                f"expected (batch, num_points, {self.in_dim}), got {tuple(points.shape)}", source="points"
            )
        x = points.transpose(1, 2)  # (batch, in_dim, N)
        if self.tnet is not None:
            xyz = x[:, :3]
            xyz = torch.bmm(self.tnet(xyz, mask).transpose(1, 2), xyz)  # rotate every point alike
            x = torch.cat([xyz, x[:, 3:]], dim=1)
        return self.mlp(x).transpose(1, 2)

    def forward(self, points: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        """The pooled vector ``(batch, out_dim)``; with ``return_tokens`` also every point as a token (its
        features, projected as the pooled vector is) and the mask (:mod:`xmodal.nn.tokens`)."""
        points_feats = self.forward_points(points, mask)  # (batch, N, C)
        pooled = self.proj(masked_max(points_feats.transpose(1, 2), mask))
        if not return_tokens:
            return pooled
        return EncoderTokens(pooled, self.proj(points_feats), full_mask(points_feats, mask))
