"""Fusion of per-modality representations: concatenation, gated fusion, cross-modal attention, and low-rank
multimodal fusion (LMF). Vector fusions take ``{modality: (batch, dim)}`` in the order the dict gives (the
encoders' order in ``LateFusionModel``) and return ``(batch, out_dim)``. Token fusions (``needs_tokens = True``:
:class:`TokenCrossAttentionFusion`) take every modality's :class:`~xmodal.nn.tokens.EncoderTokens` instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from xmodal.errors import MissingModalityError, ShapeError


def _ordered(x: Mapping[str, torch.Tensor], names: list[str]) -> list[torch.Tensor]:
    missing = [n for n in names if n not in x]
    if missing:
        raise MissingModalityError(f"fusion needs {names}, missing {missing}", source="fusion input")
    return [x[n] for n in names]


class ConcatFusion(nn.Module):
    """Concatenate the embeddings of ``in_dims``' modalities in that order: ``out_dim = sum(in_dims.values())``."""

    def __init__(self, in_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.names = list(in_dims)
        self.out_dim = sum(in_dims.values())

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat(_ordered(x, self.names), dim=-1)


class GatedFusion(nn.Module):
    """Gated multimodal unit (Arevalo et al. 2017, GMU), generalised to M modalities:
    ``h_m = tanh(W_m x_m)``, ``g = softmax_m(W_g [x_1; ...; x_M])`` per output unit (for M = 2 this is the
    paper's sigmoid gate z and 1 - z), output ``sum_m g_m * h_m``."""

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__()
        self.names = list(in_dims)
        self.proj = nn.ModuleDict({n: nn.Linear(d, out_dim) for n, d in in_dims.items()})
        self.gate = nn.Linear(sum(in_dims.values()), out_dim * len(self.names))
        self.out_dim = out_dim

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = _ordered(x, self.names)
        h = torch.stack([torch.tanh(self.proj[n](v)) for n, v in zip(self.names, xs)], dim=1)  # (b, M, out)
        g = self.gate(torch.cat(xs, dim=-1)).view(h.shape).softmax(dim=1)  # (b, M, out)
        return (g * h).sum(dim=1)


class CrossModalAttention(nn.Module):
    """Queries from one modality attend to keys/values of another (as in MulT, Tsai et al. 2019): pre-norm
    multi-head attention with a residual, then a feed-forward block.

    ``forward(query (b, Lq, query_dim), context (b, Lc, context_dim), context_mask (b, Lc) True = valid,
    query_mask (b, Lq))`` -> ``(b, Lq, query_dim)``; padded queries are zeroed."""

    def __init__(
        self, query_dim: int, context_dim: int, num_heads: int = 4, dropout: float = 0.0, ff_mult: int = 2
    ) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(query_dim)
        self.norm_c = nn.LayerNorm(context_dim)
        self.attn = nn.MultiheadAttention(
            query_dim, num_heads, dropout=dropout, kdim=context_dim, vdim=context_dim, batch_first=True
        )
        self.ff = nn.Sequential(
            nn.LayerNorm(query_dim),
            nn.Linear(query_dim, ff_mult * query_dim),
            nn.GELU(),
            nn.Linear(ff_mult * query_dim, query_dim),
        )
        self.out_dim = query_dim

    def forward(
        self,
        query: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if query.shape[0] != context.shape[0]:
            raise ShapeError(
                f"batch sizes differ: query {tuple(query.shape)}, context {tuple(context.shape)}",
                source="CrossModalAttention",
            )
        pad = None if context_mask is None else ~context_mask.bool()  # PyTorch wants True = ignore
        c = self.norm_c(context)
        attended, _ = self.attn(self.norm_q(query), c, c, key_padding_mask=pad, need_weights=False)
        x = query + attended
        x = x + self.ff(x)
        if query_mask is not None:
            x = x * query_mask[..., None].to(x.dtype)
        return x


class CrossAttentionFusion(nn.Module):
    """Fuse two sequence modalities: ``query`` attends to ``context``, then masked mean pooling over the
    queries -> ``(batch, query_dim)``. Input: ``{query: (b, Lq, dq), context: (b, Lc, dc), optional
    "<name>_mask"}``."""

    def __init__(
        self, query: str, context: str, query_dim: int, context_dim: int, num_heads: int = 4
    ) -> None:
        super().__init__()
        self.query, self.context = query, context
        self.block = CrossModalAttention(query_dim, context_dim, num_heads)
        self.out_dim = query_dim

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        q, c = _ordered(x, [self.query, self.context])
        q_mask, c_mask = x.get(f"{self.query}_mask"), x.get(f"{self.context}_mask")
        y = self.block(q, c, c_mask, q_mask)
        if q_mask is None:
            return y.mean(dim=1)
        w = q_mask.to(y.dtype)[..., None]
        return (y * w).sum(1) / w.sum(1).clamp_min(1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: ``(b, L, d)`` and ``(b, L)`` (True = valid) -> ``(b, d)``."""
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class TokenCrossAttentionFusion(nn.Module):
    """Token-level cross-modal attention among M modalities (MulT, Tsai et al. 2019, generalised to M inputs).

    Every modality's tokens are projected to ``width`` and tagged with a learned modality embedding; in each of
    ``depth`` layers, the tokens of every modality attend to the tokens of all the other modalities together
    (one :class:`CrossModalAttention` block per modality and layer; padded keys are masked out, padded queries
    zeroed); a lone modality attends to itself. Each modality's tokens are then LayerNorm'ed and mean-pooled
    over their valid positions, and the M vectors are concatenated (as MulT concatenates its cross-modal
    streams): ``out_dim = width * M``. Padding appended to any input changes nothing.

    Input: ``{modality: tokens}`` where tokens are an :class:`~xmodal.nn.tokens.EncoderTokens` (or any
    ``(pooled, tokens (b, L, d), mask (b, L))`` triple), ``d = in_dims[modality]``.
    """

    needs_tokens = True

    def __init__(self, in_dims: Mapping[str, int], width: int = 128, heads: int = 4, depth: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.names = list(in_dims)
        self.proj = nn.ModuleDict({n: nn.Linear(d, width) for n, d in in_dims.items()})
        self.modality = nn.Parameter(torch.randn(len(self.names), width) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleDict({n: CrossModalAttention(width, width, heads, dropout) for n in self.names})
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.out_dim = width * len(self.names)

    def forward(self, x: Mapping[str, Any]) -> torch.Tensor:
        missing = [n for n in self.names if n not in x]
        if missing:
            raise MissingModalityError(f"fusion needs {self.names}, missing {missing}", source="fusion input")
        h, masks = {}, {}
        for i, n in enumerate(self.names):
            item = x[n]
            if not (isinstance(item, tuple) and len(item) == 3 and item[1].dim() == 3):
                raise ShapeError(f"token fusion needs {n!r} as (pooled, tokens (b, L, d), mask (b, L)), got "
                                 f"{type(item).__name__}", source=n)
            h[n], masks[n] = self.proj[n](item[1]) + self.modality[i], item[2].bool()
        for layer in self.layers:
            blocks = cast(nn.ModuleDict, layer)  # built as one ModuleDict of blocks per layer
            new = {}
            for n in self.names:
                others = [m for m in self.names if m != n] or [n]
                context = torch.cat([h[m] for m in others], dim=1)
                context_mask = torch.cat([masks[m] for m in others], dim=1)
                new[n] = blocks[n](h[n], context, context_mask, masks[n])
            h = new
        return torch.cat([masked_mean(self.norm(h[n]), masks[n]) for n in self.names], dim=-1)


class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion (Liu et al. 2018, LMF). Equal to tensor fusion (TFN: the outer product of the
    inputs each extended with a 1, times a weight tensor) whose weight tensor is a rank-``rank`` sum of
    per-modality factors, computed without forming the product:
    ``out = sum_r w_r * prod_m ([1, x_m] @ F_m[r]) + bias``.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int, rank: int = 4) -> None:
        super().__init__()
        self.names = list(in_dims)
        self.factors = nn.ParameterDict(
            {
                n: nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, d + 1, out_dim)))
                for n, d in in_dims.items()
            }
        )
        self.fusion_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)))
        self.fusion_bias = nn.Parameter(torch.zeros(out_dim))
        self.out_dim, self.rank = out_dim, rank

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        product = None
        for n, v in zip(self.names, _ordered(x, self.names)):
            ones = torch.ones(v.shape[0], 1, dtype=v.dtype, device=v.device)
            z = torch.matmul(torch.cat([ones, v], dim=-1), self.factors[n])  # (rank, batch, out)
            product = z if product is None else product * z
        return torch.einsum("r,rbo->bo", self.fusion_weights[0], product) + self.fusion_bias
