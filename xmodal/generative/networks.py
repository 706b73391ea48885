"""Denoising networks for every backbone: ``net(x, t, cond=None) -> output`` of ``x``'s shape (or twice its
channels for a learned variance).

- :class:`UNet2d` wraps diffusers' ``UNet2DModel`` (the field's standard image U-Net; no second one here),
  adding label or vector conditioning through its class embedding.
- :class:`SpaceTimeUNet` is a factorised (2+1)-D U-Net for video ``(batch, C, T, H, W)``: each block is a
  spatial 3x3 convolution per frame followed by a temporal convolution per pixel (as video diffusion models
  factorise space and time), down/up-sampling space only. diffusers' ``UNet3DConditionModel`` needs text
  cross-attention and is far larger; this one is small enough for CPU tests.
- :class:`DiT` is Peebles & Xie's transformer denoiser with adaLN-Zero blocks, for images (patchified),
  latents and token sequences ``(batch, length, channels)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError, require_module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(batch, dim)``: ``[cos(t f_i), sin(t f_i)]`` with ``f_i = max_period^(-i / half)``
    (improved-diffusion's ``timestep_embedding``; diffusers' with ``flip_sin_to_cos=True, shift=0``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _check_cond(conditional: bool, cond: torch.Tensor | None) -> None:
    if conditional and cond is None:
        raise ShapeError("this network is conditional: pass cond", source="cond")
    if not conditional and cond is not None:
        raise ConfigError("this network is unconditional (no num_classes or cond_dim) but cond was given")


class UNet2d(nn.Module):
    """diffusers' ``UNet2DModel`` behind ``net(x, t, cond=None)``.

    ``num_classes`` gives label conditioning (pass ``num_classes + 1`` with classifier-free guidance's null
    label); ``cond_dim`` gives vector conditioning, projected to the time-embedding size and added to it
    (diffusers' ``class_embed_type="identity"``). Other keyword arguments go to ``UNet2DModel``.
    """

    def __init__(self, sample_size: int, in_channels: int = 3, out_channels: int | None = None,
                 block_out_channels: Sequence[int] = (64, 128, 128), layers_per_block: int = 1,
                 attention: Sequence[bool] | None = None, num_classes: int | None = None,
                 cond_dim: int | None = None, norm_num_groups: int = 16, **kwargs) -> None:
        super().__init__()
        diffusers = require_module("diffusers", extra="generative")
        if num_classes is not None and cond_dim is not None:
            raise ConfigError("give num_classes (labels) or cond_dim (vectors), not both")
        attention = list(attention) if attention is not None else [False] * (len(block_out_channels) - 1) + [True]
        if len(attention) != len(block_out_channels):
            raise ConfigError("attention needs one flag per entry of block_out_channels")
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
        up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
        time_dim = block_out_channels[0] * 4
        self.unet = diffusers.UNet2DModel(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels or in_channels,
            block_out_channels=tuple(block_out_channels), layers_per_block=layers_per_block,
            down_block_types=down, up_block_types=up, norm_num_groups=norm_num_groups,
            num_class_embeds=num_classes, class_embed_type="identity" if cond_dim else None, **kwargs,
        )
        self.cond_proj = nn.Linear(cond_dim, time_dim) if cond_dim else None
        self.conditional = num_classes is not None or cond_dim is not None

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        _check_cond(self.conditional, cond)
        labels = self.cond_proj(cond) if self.cond_proj is not None else cond
        return self.unet(x, t, class_labels=labels).sample


# ---- factorised space-time U-Net ----------------------------------------------------------------------------


class _SpaceTimeBlock(nn.Module):
    """GroupNorm-SiLU-conv(1x3x3) then GroupNorm-SiLU-conv(3x1x1), with a time-embedding shift and a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(min(groups, c_in), c_in), nn.GroupNorm(min(groups, c_out), c_out)
        self.spatial = nn.Conv3d(c_in, c_out, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0))
        self.emb = nn.Linear(emb_dim, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.spatial(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None, None]
        h = self.temporal(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpaceTimeUNet(nn.Module):
    """``(batch, C, T, H, W)`` video denoiser; H and W must divide by ``2 ** (len(channels) - 1)``, T is free.

    ``num_classes`` / ``cond_dim`` add a label embedding or a projected vector to the timestep embedding.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None, channels: Sequence[int] = (32, 64),
                 num_classes: int | None = None, cond_dim: int | None = None, groups: int = 8) -> None:
        super().__init__()
        self.base = channels[0]
        emb_dim = 4 * channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = nn.Embedding(num_classes, emb_dim) if num_classes else None
        self.cond_proj = nn.Linear(cond_dim, emb_dim) if cond_dim else None
        self.stem = nn.Conv3d(in_channels, channels[0], (1, 3, 3), padding=(0, 1, 1))
        self.down = nn.ModuleList()
        prev = channels[0]
        skips = []
        for i, ch in enumerate(channels):
            self.down.append(_SpaceTimeBlock(prev, ch, emb_dim, groups))
            skips.append(ch)
            prev = ch
            if i < len(channels) - 1:
                self.down.append(nn.Conv3d(ch, ch, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1)))
        self.mid = _SpaceTimeBlock(prev, prev, emb_dim, groups)
        self.up = nn.ModuleList()
        for i, ch in reversed(list(enumerate(channels))):
            self.up.append(_SpaceTimeBlock(prev + skips.pop(), ch, emb_dim, groups))
            prev = ch
            if i > 0:
                self.up.append(nn.ConvTranspose3d(ch, channels[i - 1], (1, 4, 4), stride=(1, 2, 2),
                                                  padding=(0, 1, 1)))
                prev = channels[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(min(groups, prev), prev), nn.SiLU(),
                                 nn.Conv3d(prev, out_channels or in_channels, (1, 3, 3), padding=(0, 1, 1)))
        self.factor = 2 ** (len(channels) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 5 or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ShapeError(f"video must be (batch, C, T, H, W) with H, W divisible by {self.factor}, got "
                             f"{tuple(x.shape)}", source="x")
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype))
        _check_cond(self.label is not None or self.cond_proj is not None, cond)
        if self.label is not None:
            emb = emb + self.label(cond)
        elif self.cond_proj is not None:
            emb = emb + self.cond_proj(cond)
        h = self.stem(x)
        skips = []
        for layer in self.down:
            if isinstance(layer, _SpaceTimeBlock):
                h = layer(h, emb)
                skips.append(h)
            else:
                h = layer(h)
        h = self.mid(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], 1), emb) if isinstance(layer, _SpaceTimeBlock) else layer(h)
        return self.out(h)


# ---- DiT ------------------------------------------------------------------------------------------------


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """Pre-norm attention and MLP, each modulated (shift, scale) and gated by the conditioning: adaLN-Zero."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        ada_linear = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(ada_linear.weight)
        nn.init.zeros_(ada_linear.bias)
        self.ada = nn.Sequential(nn.SiLU(), ada_linear)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, -1)
        h = _modulate(self.norm1(x), shift1, scale1)
        x = x + gate1[:, None] * self.attn(h, h, h, need_weights=False)[0]
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Diffusion transformer on images ``(batch, C, H, W)`` (``patch_size`` patches) or sequences ``(batch, L,
    C)`` (``patch_size=None``: each position is a token; latents or embedded discrete tokens).

    The output has ``out_channels`` (default ``C``; ``2 C`` for a learned variance) in the input's layout; the
    final layer is zero-initialised, so an untrained DiT predicts zeros, as in the paper.
    """

    def __init__(self, in_channels: int, max_len: int, patch_size: int | None = 2, out_channels: int | None = None,
                 dim: int = 128, depth: int = 4, heads: int = 4, num_classes: int | None = None,
                 cond_dim: int | None = None) -> None:
        super().__init__()
        self.patch, self.in_channels = patch_size, in_channels
        self.out_channels = out_channels or in_channels
        p2 = (patch_size or 1) ** 2
        self.embed = nn.Linear(in_channels * p2, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.time_mlp = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes, dim) if num_classes else None
        self.cond_proj = nn.Linear(cond_dim, dim) if cond_dim else None
        self.blocks = nn.ModuleList(DiTBlock(dim, heads) for _ in range(depth))
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        final_ada_linear = nn.Linear(dim, 2 * dim)
        self.final_ada = nn.Sequential(nn.SiLU(), final_ada_linear)
        self.final = nn.Linear(dim, self.out_channels * p2)
        for layer in (final_ada_linear, self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.max_len = max_len

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch is None:
            if x.ndim != 3 or x.shape[-1] != self.in_channels:
                raise ShapeError(f"expected (batch, length, {self.in_channels}), got {tuple(x.shape)}", source="x")
            return x
        b, c, h, w = x.shape
        p = self.patch
        if c != self.in_channels or h % p or w % p:
            raise ShapeError(f"expected (batch, {self.in_channels}, H, W) with H, W divisible by {p}, got "
                             f"{tuple(x.shape)}", source="x")
        return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), -1)

    def _untokens(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.patch is None:
            return y
        b, _, h, w = like.shape
        p = self.patch
        y = y.reshape(b, h // p, w // p, self.out_channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return y.reshape(b, self.out_channels, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self._tokens(x)
        if tokens.shape[1] > self.max_len:
            raise ShapeError(f"{tokens.shape[1]} tokens exceed max_len={self.max_len}", source="x")
        h = self.embed(tokens) + self.pos[:, : tokens.shape[1]]
        c = self.time_mlp(timestep_embedding(t, 256).to(h.dtype))
        _check_cond(self.label is not None or self.cond_proj is not None, cond)
        if self.label is not None:
            c = c + self.label(cond)
        elif self.cond_proj is not None:
            c = c + self.cond_proj(cond)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self._untokens(self.final(_modulate(self.final_norm(h), shift, scale)), x)
