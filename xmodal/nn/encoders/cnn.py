"""Convolutional encoders for continuous, redundant signals: images (2D), video clips (3D), waveforms and
spectrogram frames (1D).

Each encoder is a stack of stages ``conv -> norm -> activation`` (the first conv of every stage after the first
has stride 2), then global pooling and a linear layer to ``out_dim``. ``forward`` returns the pooled vector;
``forward_features`` returns the last feature map (2D: ``(batch, C, H', W')``) or sequence (1D:
``(batch, T', C)`` with its downsampled mask) for localisation heads.

Padding masks (True = valid; ``(batch, time)`` in 1D, ``(batch, H, W)`` in 2D, ``(batch, T, H, W)`` in 3D, each
sample's valid region starting at index 0 on every axis, i.e. padding at the end) are exact: padded positions
are zeroed after every convolution (with its norm and activation), so that a valid position sees the same zeros
a smaller, unpadded input would see at its edge, at every depth. That holds for ``norm="layer"`` (per-position
channel norm), ``norm="none"`` and ``norm="batch"`` in eval mode; ``norm="group"`` pools statistics over all
positions, padding included, and so does BatchNorm in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from xmodal.errors import ShapeError

Norm = Literal["batch", "group", "layer", "none"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis (dim 1) at every position; it never mixes positions, so it is mask-safe."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1)


def _norm(kind: Norm, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return _BATCHNORM[dims](channels)
    if kind == "group":
        # 8 groups where possible (Wu & He 2018 use 32 for wide nets; our stages are narrow).
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "layer":
        return ChannelLayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group', 'layer' or 'none', got {kind!r}")


class ConvStage(nn.Module):
    """``depth`` convs (the first with ``stride``), each followed by norm and activation."""

    def __init__(
        self,
        dims: int,
        in_ch: int,
        out_ch: int,
        stride: int,
        depth: int,
        kernel_size: int,
        norm: Norm,
        act: type[nn.Module],
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [
                _CONV[dims](
                    in_ch if i == 0 else out_ch,
                    out_ch,
                    kernel_size,
                    stride=stride if i == 0 else 1,
                    padding=kernel_size // 2,
                    bias=norm == "none",
                ),
                _norm(norm, dims, out_ch),
                act(),
            ]
        self.layers = nn.Sequential(*layers)
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` ``(batch, C, *spatial)`` and its optional mask ``(batch, *spatial)`` -> the stage's output and mask.

        With a mask, padded positions are zeroed after every conv-norm-activation: the next conv of the stage
        must see zeros there, as it would at the edge of an unpadded input (its bias, the norm's shift and
        GELU would otherwise fill them).
        """
        for i in range(0, len(self.layers), 3):
            x = self.layers[i + 2](self.layers[i + 1](self.layers[i](x)))
            if mask is not None:
                if i == 0:
                    mask = downsample_mask(mask, self.stride, x.shape[2:])
                x = x * mask[:, None].to(x.dtype)
        return x, mask


def downsample_mask(mask: torch.Tensor, stride: int, size: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The mask of a conv's output: a conv with padding ``k // 2`` and ``stride`` centres output ``i`` on input
    ``i * stride`` along every axis, so the output is valid iff that input is."""
    index = (slice(None),) + tuple(slice(0, n * stride, stride) for n in size)
    return mask[index]


class ConvEncoder(nn.Module):
    """A ``dims``-D conv encoder: stages of ``conv-norm-act``, global average pooling, linear to ``out_dim``.

    Args:
        dims: 1, 2 or 3 spatial/temporal axes. Input is ``(batch, in_channels, *spatial)``.
        in_channels: channels of the input (3 for RGB, 1 for a waveform, n_mels for a log-mel read as 1D).
        channels: width of each stage; stage ``i > 0`` halves every spatial axis (stride 2).
        out_dim: size of the pooled output; ``None`` keeps ``channels[-1]`` (no final linear).
        depth: convs per stage.
        kernel_size: odd kernel size, same on every axis.
        norm: "batch", "group", "layer" (channel LayerNorm) or "none".
        act: activation class.
        stem_stride: stride of the first stage (2 or 4 downsizes large inputs early, as ResNet's stem does).
        channels_last: 2-D/3-D convolutions in channels-last memory format (kernels and the input converted;
            every later activation follows). Same values; on CPU, oneDNN's convolutions with GroupNorm run
            markedly faster that way, and only when the kernels are converted too
            (``benchmarks/bench_train_variants.py``). Checkpoints store contiguous copies, as for any tensor.
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        out_dim: int | None = None,
        depth: int = 1,
        kernel_size: int = 3,
        norm: Norm = "batch",
        act: type[nn.Module] = nn.GELU,
        stem_stride: int = 1,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if dims not in _CONV:
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        if kernel_size % 2 != 1:
            raise ValueError(
                f"kernel_size must be odd so that padding keeps positions aligned, got {kernel_size}"
            )
        self.dims = dims
        self.in_channels = in_channels
        self.memory_format = {2: torch.channels_last, 3: torch.channels_last_3d}.get(dims) if channels_last else None
        stages, prev = [], in_channels
        for i, ch in enumerate(channels):
            stride = stem_stride if i == 0 else 2
            stages.append(ConvStage(dims, prev, ch, stride, depth, kernel_size, norm, act))
            prev = ch
        self.stages = nn.ModuleList(stages)
        self.feature_dim = prev
        self.proj = nn.Identity() if out_dim is None else nn.Linear(prev, out_dim)
        self.out_dim = prev if out_dim is None else out_dim
        if self.memory_format is not None:
            # the conv kernels (4-D / 5-D) only; Module.to accepts memory_format at run time, its stubs omit it
            self.stages.to(memory_format=self.memory_format)  # type: ignore[call-overload]

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"expected (batch, {self.in_channels}, {', '.join(['...'] * self.dims)}), got {tuple(x.shape)}",
                source=f"{type(self).__name__} input",
            )

    def forward_features(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Last feature map ``(batch, C, *spatial')`` and, with a mask, its downsampled mask ``(batch, *spatial')``."""
        self._check(x)
        if mask is not None:
            expected = (x.shape[0], *x.shape[2:])
            if tuple(mask.shape) != expected:
                axes = "time" if self.dims == 1 else ", ".join(["..."] * self.dims)
                raise ShapeError(f"expected (batch, {axes}) = {expected}, got {tuple(mask.shape)}", source="mask")
            mask = mask.bool()
            x = x * mask[:, None].to(x.dtype)
        if self.memory_format is not None:
            x = x.contiguous(memory_format=self.memory_format)
        for stage in self.stages:
            x, mask = stage(x, mask)
        return x, mask

    def pool(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Global average over the spatial axes (the mean over valid positions with a mask) -> ``(batch, out_dim)``."""
        if mask is None:
            pooled = feats.flatten(2).mean(-1)
        else:
            weights = mask.to(feats.dtype).flatten(1)[:, None, :]  # (batch, 1, positions)
            pooled = (feats.flatten(2) * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)
        return self.proj(pooled)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(batch, in_channels, *spatial)``, ``mask``: ``(batch, *spatial)`` -> ``(batch, out_dim)``."""
        feats, mask = self.forward_features(x, mask)
        return self.pool(feats, mask)


class CNN2d(ConvEncoder):
    """Image encoder: ``(batch, C, H, W) -> (batch, out_dim)``; ``forward_features`` gives ``(batch, C', H', W')``."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        out_dim: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(2, in_channels, channels, out_dim, **kwargs)


class CNN3d(ConvEncoder):
    """Video encoder on ``(batch, C, T, H, W)`` -> ``(batch, out_dim)``."""

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128),
        out_dim: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(3, in_channels, channels, out_dim, **kwargs)


class CNN1d(ConvEncoder):
    """Sequence encoder on ``(batch, C, time)`` (a waveform with C=1, or a log-mel with C=n_mels) with an
    optional ``(batch, time)`` mask -> ``(batch, out_dim)``. ``forward_sequence`` gives ``(batch, time', C')``."""

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        out_dim: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(1, in_channels, channels, out_dim, **kwargs)

    def forward_sequence(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-step features ``(batch, time', C')`` and the mask ``(batch, time')`` (None if none was given)."""
        feats, mask = self.forward_features(x, mask)
        return feats.transpose(1, 2), mask
