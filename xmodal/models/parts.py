"""Registered fusions, heads and losses: the names a recipe's ``model:`` and objective refer to.

Fusions take ``{modality: (batch, dim)}`` and return ``(batch, out_dim)`` (``cross_attention`` takes every
modality's tokens instead, :mod:`xmodal.nn.tokens`); heads map the fused vector to the task's output; losses are ``loss(outputs, batch) -> scalar`` on a model's output dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, MissingModalityError, ShapeError
from xmodal.models.registry import register_fusion, register_head, register_loss
from xmodal.nn.fusion import ConcatFusion, GatedFusion, LowRankFusion, TokenCrossAttentionFusion
from xmodal.nn.heads import ClassifierHead


# ------------------------------------------------------------------------------------------------ fusions
@register_fusion("concat")
def concat(in_dims: Mapping[str, int]) -> nn.Module:
    """Concatenation in the encoders' order."""
    return ConcatFusion(in_dims)


@register_fusion("gated")
def gated(in_dims: Mapping[str, int], *, width: int = 256) -> nn.Module:
    """Gated multimodal unit (Arevalo et al. 2017) over every modality."""
    return GatedFusion(in_dims, width)


@register_fusion("low_rank")
def low_rank(in_dims: Mapping[str, int], *, width: int = 256, rank: int = 4) -> nn.Module:
    """Low-rank multimodal fusion (Liu et al. 2018)."""
    return LowRankFusion(in_dims, width, rank)


class ModalityAttentionFusion(nn.Module):
    """Attention among pooled modality embeddings (one token per modality; ``attention_pooled``): each modality's vector, projected to ``width`` and
    tagged with a learned modality embedding, attends to the other modalities' vectors (pre-norm multi-head
    attention with a residual, then a feed-forward block, as in MulT); the fused vector is their mean."""

    def __init__(self, in_dims: Mapping[str, int], width: int = 256, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.names = list(in_dims)
        self.proj = nn.ModuleDict({n: nn.Linear(d, width) for n, d in in_dims.items()})
        self.modality = nn.Parameter(torch.randn(len(self.names), width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        m = len(self.names)
        # True = may not attend: every modality sees the others only (alone, it sees itself).
        self.register_buffer("blocked", torch.eye(m, dtype=torch.bool) if m > 1 else torch.zeros(1, 1, dtype=torch.bool),
                             persistent=False)
        self.out_dim = width

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [n for n in self.names if n not in x]
        if missing:
            raise MissingModalityError(f"fusion needs {self.names}, missing {missing}", source="fusion input")
        tokens = torch.stack([self.proj[n](x[n]) for n in self.names], dim=1) + self.modality  # (b, M, width)
        h = self.norm(tokens)
        attended, _ = self.attn(h, h, h, attn_mask=self.blocked, need_weights=False)
        y = tokens + attended
        y = y + self.ff(y)
        return y.mean(dim=1)


@register_fusion("attention_pooled")
def attention_pooled(in_dims: Mapping[str, int], *, width: int = 256, heads: int = 4,
                     dropout: float = 0.0) -> nn.Module:
    """Attention between the modalities' pooled embeddings, one vector per modality (what ``cross_attention``
    was before it attended to tokens; its recipes and checkpoints load under this name)."""
    return ModalityAttentionFusion(in_dims, width, heads, dropout)


@register_fusion("cross_attention")
def cross_attention(in_dims: Mapping[str, int], *, width: int = 128, heads: int = 4, depth: int = 1,
                    dropout: float = 0.0) -> nn.Module:
    """Token-level cross-modal attention: every modality's tokens attend to the other modalities' tokens
    (masks honoured), then masked mean pooling per modality, concatenated (``out_dim = width * modalities``).
    Every encoder must give tokens (:func:`xmodal.nn.tokens.gives_tokens`)."""
    if width % heads:
        raise ConfigError(f"model.fusion.heads: {heads} must divide width ({width})")
    return TokenCrossAttentionFusion(in_dims, width, heads, depth, dropout)


# -------------------------------------------------------------------------------------------------- heads
class OutputHead(nn.Module):
    """An MLP head whose output is named ``output_key`` in the model's outputs; ``squeeze`` drops a last axis
    of size 1 (one regression target)."""

    def __init__(self, in_dim: int, outputs: int, hidden: int | None, dropout: float, output_key: str,
                 squeeze: bool = False) -> None:
        super().__init__()
        self.head = ClassifierHead(in_dim, outputs, hidden, dropout)
        self.output_key, self.squeeze = output_key, squeeze

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(x)
        return y.squeeze(-1) if self.squeeze else y


@register_head("classifier")
def classifier(in_dim: int, *, classes: int, hidden: int | None = None, dropout: float = 0.0) -> nn.Module:
    """Logits ``(batch, classes)`` (binary and multiclass; multilabel with loss ``bce``)."""
    return OutputHead(in_dim, classes, hidden, dropout, "logits")


@register_head("regression")
def regression(in_dim: int, *, targets: int = 1, hidden: int | None = None, dropout: float = 0.0) -> nn.Module:
    """Predictions ``(batch,)`` for one target, ``(batch, targets)`` for several."""
    return OutputHead(in_dim, targets, hidden, dropout, "prediction", squeeze=targets == 1)


# ------------------------------------------------------------------------------------------------- losses
def _target(batch: Mapping[str, Any], key: str) -> torch.Tensor:
    if key not in batch:
        raise MissingModalityError(f"the loss needs the target {key!r}; the batch holds {sorted(batch)}", source=key)
    return torch.as_tensor(batch[key])


@register_loss("cross_entropy")
def cross_entropy(*, target: str = "label", label_smoothing: float = 0.0) -> Any:
    """Cross-entropy of ``outputs["logits"]`` against integer class indices ``batch[target]``."""

    def loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        logits = outputs["logits"]
        y = _target(batch, target).to(logits.device).long()
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

    return loss


@register_loss("bce")
def bce(*, target: str = "label") -> Any:
    """Binary cross-entropy with logits, for multilabel targets ``(batch, classes)`` in {0, 1}."""

    def loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        logits = outputs["logits"]
        y = _target(batch, target).to(logits.device).float()
        if y.shape != logits.shape:
            raise ShapeError(f"target {tuple(y.shape)} differs from logits {tuple(logits.shape)}", source=target)
        return F.binary_cross_entropy_with_logits(logits.float(), y)

    return loss


@register_loss("mse")
def mse(*, target: str = "label") -> Any:
    """Mean squared error of ``outputs["prediction"]`` against ``batch[target]``."""

    def loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        pred = outputs["prediction"]
        y = _target(batch, target).to(pred.device).float()
        return F.mse_loss(pred.float(), y.view_as(pred))

    return loss


def _info_nce() -> Any:
    """Mean symmetric InfoNCE over every pair of ``*_emb`` outputs with the model's logit scale, gathered
    across ranks (a contrastive model's outputs)."""
    from xmodal.nn.multimodal import contrastive_loss

    def loss(outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        return contrastive_loss(outputs)

    return loss


_info_nce.coupled = True  # type: ignore[attr-defined]
register_loss("info_nce")(_info_nce)
