"""Visual sound source localisation: cIoU, success rate and AUC as the LVS test code computes them
(hche11/Localizing-Visual-Sounds-the-Hard-Way ``test.py`` and ``utils.py``).

- Prediction: the heatmap is resized to 224 x 224 with OpenCV's ``INTER_LINEAR`` (:func:`resize_linear`), then
  LVS computes ``pred = 1 - normalize_img(-heatmap)`` (min-max; a constant map is left as is), takes
  ``threshold = np.sort(pred.ravel())[25088]``, sets ``pred > threshold`` to 1 and what is still below 1 to 0,
  and counts ``>= 0.5`` as inside (so pixels at the maximum stay 1 even when they tie with the threshold).
- Ground truth: VGG-SS, the union of the boxes scaled by ``int(224 * max(v, 0))`` (:func:`vggss_gt_map`);
  Flickr-SoundNet, each annotator's box (256 x 256 pixels, scaled by ``int(224 * v / 256)``) adds 1, then the
  sum is halved and clipped at 1, so a pixel one annotator marked counts 0.5 (:func:`flickr_gt_map`).
- ``cIoU = sum(infer * gt) / (sum(gt) + sum(infer * (gt == 0)))`` per sample; the reported ``ciou`` is the
  percentage of samples with cIoU >= 0.5, ``auc`` is 100 x the trapezoid area (``sklearn.metrics.auc``) of the
  success rate at thresholds ``0.05 * i`` for i = 0..20, computed in floating point as LVS does (``0.05 * 6``
  is 0.30000000000000004, so a cIoU of exactly 0.3 fails that threshold).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from xmodal.errors import MetricInputError, NonFiniteError, ShapeError

__all__ = ["LVS_SIZE", "binarize_lvs", "ciou", "flickr_gt_map", "localization_scores", "resize_linear",
           "vggss_gt_map"]

LVS_SIZE = 224


def _linear_taps(src: int, dst: int, zero_at_edges: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and float32 weights of OpenCV's INTER_LINEAR along one axis (half-pixel centres):
    ``fx = (float)((d + 0.5) * scale - 0.5)``, ``sx = floor(fx)``, weights ``1 - fx, fx``. Outside the source,
    OpenCV moves the tap onto the edge with weight 1 along x, and clamps the two row indices along y."""
    scale = 1.0 / (dst / src)
    fx = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx = fx - sx.astype(np.float32)
    if zero_at_edges:
        low, high = sx < 0, sx >= src - 1
        fx[low | high] = 0
        sx[low] = 0
        sx[high] = src - 1
    return np.clip(sx, 0, src - 1), np.clip(sx + 1, 0, src - 1), np.stack([np.float32(1) - fx, fx])


def resize_linear(image: np.ndarray, size: tuple[int, int] = (LVS_SIZE, LVS_SIZE)) -> np.ndarray:
    """Resize a 2-D map to ``size = (height, width)`` like ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``
    on float images: no antialiasing, rows first then columns, float32 weights; float64 maps stay float64, any
    other type is computed in float32. Written here because OpenCV is not a dependency. It equals OpenCV 4.10's
    generic path bit for bit; OpenCV's default IPP kernel rounds differently (up to ~1e-4 at non-integer
    scales such as 20 -> 224, exact at integer ones such as 14 -> 224)."""
    a = np.asarray(image)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ShapeError(f"expected a 2-D map, got shape {a.shape}", "heatmap")
    work = a.dtype if a.dtype == np.float64 else np.dtype(np.float32)
    a = a.astype(work)  # a copy, also when no resizing is needed
    if a.shape == tuple(size):
        return a
    x0, x1, wx = _linear_taps(a.shape[1], size[1], zero_at_edges=True)
    y0, y1, wy = _linear_taps(a.shape[0], size[0], zero_at_edges=False)
    wx, wy = wx.astype(work), wy.astype(work)
    rows = a[:, x0] * wx[0] + a[:, x1] * wx[1]  # (src_h, dst_w)
    return (rows[y0] * wy[0][:, None] + rows[y1] * wy[1][:, None]).astype(work, copy=False)


def binarize_lvs(heatmap: np.ndarray) -> np.ndarray:
    """The 224 x 224 0/1 float64 map LVS scores, from a heatmap of any size (larger values = more likely)."""
    h = np.asarray(heatmap)
    if h.ndim != 2:
        raise ShapeError(f"expected a 2-D heatmap, got shape {h.shape}", "heatmap")
    if not np.issubdtype(h.dtype, np.number) or not np.isfinite(h).all():
        raise NonFiniteError("heatmap holds NaN, infinity or non-numbers", "heatmap")
    neg = -resize_linear(h)
    lo, hi = neg.min(), neg.max()
    norm = neg if hi - lo == 0 else (neg - lo) / (hi - lo)
    pred = 1 - norm
    threshold = np.sort(pred.ravel())[pred.size // 2]
    pred[pred > threshold] = 1
    pred[pred < 1] = 0
    return (pred >= 0.5).astype(np.float64)


def vggss_gt_map(bboxes: Iterable[Sequence[float]], size: int = LVS_SIZE) -> np.ndarray:
    """Union of normalised xyxy boxes, each coordinate scaled by ``int(size * max(v, 0))``, end-exclusive."""
    gt = np.zeros((size, size))
    for box in bboxes:
        xmin, ymin, xmax, ymax = (int(size * max(v, 0)) for v in box)
        gt[ymin:ymax, xmin:xmax] = 1
    return gt


def flickr_gt_map(boxes: Iterable[Sequence[int]], size: int = LVS_SIZE, frame: int = 256) -> np.ndarray:
    """Annotator consensus: each box (pixels of a ``frame`` x ``frame`` image, scaled by ``int(size * v /
    frame)``) adds 1; the sum is halved and clipped at 1."""
    gt = np.zeros((size, size))
    for box in boxes:
        xmin, ymin, xmax, ymax = (int(size * int(v) / frame) for v in box)
        one = np.zeros((size, size))
        one[ymin:ymax, xmin:xmax] = 1
        gt += one
    gt /= 2
    gt[gt > 1] = 1
    return gt


def ciou(infer: np.ndarray, gt: np.ndarray) -> float:
    """``sum(infer * gt) / (sum(gt) + sum(infer * (gt == 0)))``; NaN when both maps are empty (as LVS)."""
    infer, gt = np.asarray(infer, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if infer.shape != gt.shape:
        raise ShapeError(f"prediction {infer.shape} and ground truth {gt.shape} differ in shape", "heatmap")
    den = np.sum(gt) + np.sum(infer * (gt == 0))
    return float("nan") if den == 0 else float(np.sum(infer * gt) / den)


def localization_scores(cious: Sequence[float]) -> dict[str, float]:
    """``{"ciou": % of samples with cIoU >= 0.5, "auc": 100 x AUC of the success rate, "mean_ciou": 100 x
    mean cIoU}``. A NaN cIoU fails every threshold, as in LVS, and counts 0 in the mean."""
    values = np.asarray(cious, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise MetricInputError("need at least one cIoU value")
    x = np.array([0.05 * i for i in range(21)])
    success = np.array([np.sum(values >= t) / len(values) for t in x])
    return {"ciou": float(100 * (np.sum(values >= 0.5) / len(values))),
            "auc": float(100 * np.trapezoid(success, x)),
            "mean_ciou": float(100 * np.mean(np.nan_to_num(values, nan=0.0)))}
