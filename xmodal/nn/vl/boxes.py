"""Box losses of the DETR family (TransVG, TubeDETR): L1 on normalised (cx, cy, w, h) plus 1 - GIoU
(Rezatofighi et al. 2019) on the corner boxes."""

from __future__ import annotations

import torch

from xmodal.errors import ShapeError
from xmodal.nn.heads import box_cxcywh_to_xyxy


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of matching rows of ``a`` and ``b``, both ``(n, 4)`` corner boxes ``(x0, y0, x1, y1)`` -> ``(n,)``:
    IoU minus the share of the smallest enclosing box that the union leaves empty."""
    if a.shape != b.shape or a.shape[-1] != 4:
        raise ShapeError(f"expected two (n, 4) box tensors, got {tuple(a.shape)} and {tuple(b.shape)}", "boxes")
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp_min(0)
    inter = wh[:, 0] * wh[:, 1]
    union = area_a + area_b - inter
    iou = inter / union.clamp_min(1e-12)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp_min(0)
    enclosing = (hull[:, 0] * hull[:, 1]).clamp_min(1e-12)
    return iou - (enclosing - union) / enclosing


def box_regression_loss(pred: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0,
                        giou_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """``{"loss", "l1", "giou"}`` for ``(n, 4)`` normalised (cx, cy, w, h) boxes, each term averaged over boxes
    (TransVG sums L1 and GIoU with weight 1; DETR-style recipes use 5 and 2)."""
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise ShapeError(f"expected (n, 4) boxes, got {tuple(pred.shape)} and {tuple(target.shape)}", "boxes")
    n = max(pred.shape[0], 1)
    l1 = (pred - target).abs().sum() / n
    giou = (1 - generalized_box_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target))).sum() / n
    return {"loss": l1_weight * l1 + giou_weight * giou, "l1": l1, "giou": giou}
