"""Transformer encoder for discrete, processed modalities (text tokens, MIDI events, VQ codes) and for feature
sequences: key-padding masks, learned or sinusoidal positions, an optional CLS token, masked mean pooling."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from xmodal.errors import ShapeError


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al. 2017: ``PE[p, 2i] = sin(p / 10000^(2i/dim))``, ``PE[p, 2i+1] = cos(...)`` -> ``(length, dim)``."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class TokenEmbedding(nn.Module):
    """Front end for discrete modalities: ``(batch, time)`` integer ids -> ``(batch, time, dim)``, scaled by
    sqrt(dim) as in Vaswani et al. (so unit-variance positions do not drown the tokens)."""

    def __init__(self, vocab_size: int, dim: int, padding_idx: int | None = 0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=padding_idx)
        self.scale = math.sqrt(dim)
        self.vocab_size = vocab_size

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dtype.is_floating_point:
            raise ShapeError(f"token ids must be integers, got {ids.dtype}", source="TokenEmbedding")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ShapeError(
                f"token ids must lie in [0, {self.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]",
                source="TokenEmbedding",
            )
        return self.embed(ids) * self.scale


class TransformerEncoder(nn.Module):
    """Pre-norm Transformer encoder on ``(batch, time, in_dim)`` features, or on ``(batch, time)`` token ids when
    ``vocab_size`` is given; ``mask`` ``(batch, time)`` True = valid.

    ``forward_all`` returns ``(sequence (batch, time[+1], dim), pooled (batch, out_dim))``; with ``cls_token``
    the sequence starts with the CLS position and ``pool="cls"`` takes it, otherwise the pool is the masked
    mean over valid steps.
    """

    pos: torch.Tensor | None  # a learned parameter, a fixed buffer or none

    def __init__(
        self,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        in_dim: int | None = None,
        vocab_size: int | None = None,
        max_len: int = 1024,
        positions: Literal["learned", "sinusoidal", "none"] = "learned",
        cls_token: bool = False,
        pool: Literal["mean", "cls"] = "mean",
        dropout: float = 0.0,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        if pool == "cls" and not cls_token:
            raise ValueError("pool='cls' needs cls_token=True")
        if vocab_size is not None:
            self.input: nn.Module = TokenEmbedding(vocab_size, dim)
        else:
            self.input = nn.Identity() if in_dim in (None, dim) else nn.Linear(in_dim, dim)
        self.tokens = vocab_size is not None
        self.in_dim = in_dim or dim
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        n_pos = max_len + int(cls_token)
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(1, n_pos, dim) * 0.02)
        elif positions == "sinusoidal":
            self.register_buffer("pos", sinusoidal_positions(n_pos, dim)[None], persistent=False)
        else:
            self.pos = None
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # enable_nested_tensor=False keeps padded positions in the output (zeros would be ambiguous).
        self.layers = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)
        self.pool_mode, self.max_len = pool, max_len
        self.proj = nn.Identity() if out_dim is None else nn.Linear(dim, out_dim)
        self.out_dim = dim if out_dim is None else out_dim

    def forward_all(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        want = 2 if self.tokens else 3
        if x.dim() != want or (not self.tokens and x.shape[-1] != self.in_dim):
            raise ShapeError(
                f"expected {'(batch, time) ids' if self.tokens else f'(batch, time, {self.in_dim})'}"
                f", got {tuple(x.shape)}",
                source="TransformerEncoder",
            )
        if x.shape[1] > self.max_len:
            raise ShapeError(
                f"sequence of {x.shape[1]} steps exceeds max_len={self.max_len}", source="TransformerEncoder"
            )
        b, t = x.shape[:2]
        mask = torch.ones(b, t, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        h = self.input(x)  # (b, t, dim)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(b, -1, -1), h], dim=1)
            mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        if self.pos is not None:
            h = h + self.pos[:, : h.shape[1]]
        h = self.layers(h, src_key_padding_mask=~mask)  # PyTorch: True = ignore
        if self.pool_mode == "cls":
            pooled = h[:, 0]
        else:
            w = mask.to(h.dtype)[..., None]
            if self.cls is not None:
                w = w.clone()
                w[:, 0] = 0  # the mean is over the data steps
            pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return h, self.proj(pooled)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(x, mask)[1]
