"""MAttNet-style grounding by ranking candidate boxes (Yu et al. 2018): every candidate region of the image gets
a visual feature (RoI-aligned from the CNN map), a location feature (its normalised box and area) and a relation
feature (its offsets and size ratios to every other candidate, each paired with that candidate's visual feature),
and is scored against the expression; training is softmax cross-entropy over the image's candidates
(:func:`candidate_loss`) and the prediction is the best-scoring candidate's box.

MAttNet pools Faster R-CNN C4 features inside each box and keeps the five nearest neighbours (same category for
its location module, any category for its relation module, scored by the maximum over them). Here every other
candidate is a neighbour, and the relation feature keeps both the maximum and the sum over them, so that counts
("the second dog from the left": how many dogs lie to my left) are representable too.

Boxes are normalised ``(x1, y1, x2, y2)`` in [0, 1] of the image; ``candidate_mask`` ``(batch, K)`` is True for
real candidates (images hold different numbers of objects).
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.errors import ShapeError


def roi_align(feats: torch.Tensor, boxes: torch.Tensor, output_size: int = 3, samples: int = 2) -> torch.Tensor:
    """RoIAlign (He et al. 2017) of normalised boxes on a feature map: ``feats`` ``(b, C, H, W)``, ``boxes``
    ``(b, K, 4)`` -> ``(b, K, C, output_size, output_size)``, each bin the mean of ``samples ** 2`` bilinear
    samples. Written on ``grid_sample`` because torchvision's ``roi_align`` is unavailable here."""
    b, k = boxes.shape[:2]
    grid_n = output_size * samples
    steps = (torch.arange(grid_n, device=feats.device, dtype=feats.dtype) + 0.5) / grid_n  # (grid_n,)
    x1, y1, x2, y2 = boxes.unbind(-1)  # (b, K) each
    xs = x1[..., None] + steps * (x2 - x1)[..., None]  # (b, K, grid_n)
    ys = y1[..., None] + steps * (y2 - y1)[..., None]
    grid = torch.stack(torch.broadcast_tensors(xs[:, :, None, :], ys[:, :, :, None]), dim=-1)  # (b, K, gn, gn, 2)
    grid = grid.reshape(b, k * grid_n, grid_n, 2) * 2 - 1  # grid_sample's [-1, 1] with align_corners=False
    sampled = nn.functional.grid_sample(feats, grid, mode="bilinear", align_corners=False)  # (b, C, K*gn, gn)
    sampled = sampled.reshape(b, feats.shape[1], k, grid_n, grid_n).transpose(1, 2)  # (b, K, C, gn, gn)
    return nn.functional.avg_pool2d(sampled.flatten(0, 1), samples).reshape(b, k, feats.shape[1], output_size,
                                                                             output_size)


def location_features(boxes: torch.Tensor) -> torch.Tensor:
    """MAttNet's 5-d location: ``(x1, y1, x2, y2, area)`` of normalised boxes ``(b, K, 4)`` -> ``(b, K, 5)``."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return torch.cat([boxes, area[..., None]], dim=-1)


def relative_locations(boxes: torch.Tensor) -> torch.Tensor:
    """MAttNet's offsets of candidate j seen from candidate i: ``((x1_j - cx_i) / w_i, (y1_j - cy_i) / h_i,
    (x2_j - cx_i) / w_i, (y2_j - cy_i) / h_i, w_j h_j / (w_i h_i))`` -> ``(b, K, K, 5)`` (i, j)."""
    w = (boxes[..., 2] - boxes[..., 0]).clamp_min(1e-3)  # (b, K)
    h = (boxes[..., 3] - boxes[..., 1]).clamp_min(1e-3)
    cx, cy = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    i_scale = torch.stack([w, h, w, h], dim=-1)[:, :, None]  # (b, K, 1, 4)
    i_centre = torch.stack([cx, cy, cx, cy], dim=-1)[:, :, None]
    offsets = (boxes[:, None] - i_centre) / i_scale  # (b, K, K, 4)
    ratio = (w * h)[:, None, :] / (w * h)[:, :, None]  # (b, K, K)
    return torch.cat([offsets, ratio[..., None]], dim=-1)


def _mlp(inp: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, dim), nn.GELU(), nn.Linear(dim, dim))


class PhraseAttention(nn.Module):
    """An expression's tokens pooled into one vector (MAttNet's phrase attention): ``(b, L, D)``, ``(b, L)`` ->
    ``(b, dim)``, each of ``heads`` heads a softmax-weighted mean of projected tokens, then an MLP."""

    def __init__(self, text_dim: int, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.value = nn.Linear(text_dim, dim)
        self.score = nn.Linear(text_dim, heads)
        self.out = nn.Sequential(nn.LayerNorm(dim), _mlp(dim, dim))

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, n = text.shape[:2]
        logits = self.score(text).masked_fill(~text_mask.bool()[..., None], float("-inf"))  # (b, L, heads)
        values = self.value(text).reshape(b, n, self.heads, -1)  # (b, L, heads, dim / heads)
        return self.out(torch.einsum("blh,blhd->bhd", logits.softmax(dim=1), values).reshape(b, -1))


class CandidateRanker(nn.Module):
    """Scores candidate boxes against an expression: ``(feats (b, C, H, W), boxes (b, K, 4), candidate_mask
    (b, K), text (b, L, D), text_mask (b, L)) -> (b, K)`` logits, padded candidates at ``-inf``.

    The expression is pooled by multi-head attention over its tokens (MAttNet's phrase attention); a candidate's
    representation (visual, location, relation) is fused with it by an elementwise product and scored by a small
    MLP."""

    def __init__(self, visual_channels: int, text_dim: int = 384, dim: int = 64, pool_size: int = 3,
                 text_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.visual = nn.Sequential(nn.Flatten(2), nn.Linear(visual_channels * pool_size ** 2, dim), nn.GELU(),
                                    nn.Linear(dim, dim))
        self.location = _mlp(5, dim)
        self.relation = _mlp(2 * dim + 5, dim)  # (own visual, neighbour's visual, offsets) -> pair feature
        self.candidate = nn.Sequential(nn.LayerNorm(4 * dim), _mlp(4 * dim, dim))
        self.phrase = PhraseAttention(text_dim, dim, text_heads)
        self.score = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))

    def forward(self, feats: torch.Tensor, boxes: torch.Tensor, candidate_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> torch.Tensor:
        if feats.dim() != 4 or boxes.dim() != 3 or boxes.shape[-1] != 4 or boxes.shape[0] != feats.shape[0]:
            raise ShapeError(f"expected feats (b, C, H, W) and boxes (b, K, 4), got {tuple(feats.shape)} and "
                             f"{tuple(boxes.shape)}", "boxes")
        valid = candidate_mask.bool()
        vis = self.visual(roi_align(feats, boxes, self.pool_size))  # (b, K, dim)
        loc = self.location(location_features(boxes))
        k = boxes.shape[1]
        pairs = torch.cat([vis[:, :, None].expand(-1, -1, k, -1), vis[:, None].expand(-1, k, -1, -1),
                           relative_locations(boxes)], dim=-1)  # (b, K, K, 2 dim + 5)
        others = valid[:, None, :] & ~torch.eye(k, dtype=torch.bool, device=boxes.device)  # (b, K, K)
        rel = self.relation(pairs)
        rel_sum = (rel * others[..., None]).sum(2)
        rel_max = rel.masked_fill(~others[..., None], float("-inf")).amax(2)
        rel_max = torch.where(others.any(2, keepdim=True), rel_max, torch.zeros_like(rel_max))  # a lone object
        cand = self.candidate(torch.cat([vis, loc, rel_sum, rel_max], dim=-1))  # (b, K, dim)
        phrase = self.phrase(text, text_mask)  # (b, dim)
        logits = self.score(cand * phrase[:, None]).squeeze(-1)  # (b, K)
        return logits.masked_fill(~valid, float("-inf"))


def candidate_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over each image's candidates: ``logits`` ``(b, K)`` (padding at ``-inf``), ``target``
    ``(b,)`` the index of the referred candidate."""
    return nn.functional.cross_entropy(logits, target)
