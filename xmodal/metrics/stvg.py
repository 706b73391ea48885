"""Spatio-temporal video grounding: m_tIoU, m_vIoU, vIoU@0.3 and vIoU@0.5 as TubeDETR's evaluators
(antoyang/TubeDETR ``datasets/hcstvg_eval.py`` and ``datasets/vidstg_eval.py``, after its preprocessing).

- Frames are sampled at 5 fps, at most 200 (``sample_frame_ids``, TubeDETR's loop verbatim in behaviour).
  HC-STVG samples the whole clip, frames ``0 .. img_num - 2``, at a frame rate of ``img_num / 20``; VidSTG the
  ``used_segment`` at the video's ``fps``.
- tIoU is computed on frame numbers with end-exclusive spans; vIoU = sum of box IoU over the sampled frames of
  the intersection of the predicted and true spans / the number of sampled frames in their union (at least 1);
  ``vIoU@R`` counts vIoU strictly greater than R. Box IoU is on [x1, y1, x2, y2] without the +1 pixel.
- Predictions are per-frame boxes; the predicted span is [first boxed frame, last boxed frame + 1). Boxes on
  frames that are not sampled define the span but enter no IoU; a sampled frame inside both spans without a box
  counts IoU 0; a query without boxes scores 0. Every value is in percent.

Checked side by side with ``HCSTVGEvaluator`` and ``VidSTGEvaluator`` run from TubeDETR's snapshot (fed the
same spans and boxes in its ``{video_id}_{frame}`` layout): identical to 1e-9 on 60 HC-STVG clips of 100 to 3,001
frames and 73 VidSTG sentences at 25 to 59.94 fps, per sentence type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from xmodal.errors import MetricInputError

BoxXYXY = tuple[float, float, float, float]


def sample_frame_ids(start_frame: int, end_frame: int, video_fps: float, fps: float = 5,
                     max_len: int = 200) -> list[int]:
    """The frames TubeDETR evaluates: from ``start_frame``, every frame where ``int(frame * fps / video_fps)``
    steps, over ``range(start_frame, end_frame)``, then ``max_len`` of them evenly when there are more."""
    rate = fps / video_fps
    if rate > 1:
        raise MetricInputError(f"a video at {video_fps} fps cannot be sampled at {fps} fps (TubeDETR only "
                               "downsamples)", "fps")
    frame_ids = [start_frame]
    for frame_id in range(start_frame, end_frame):
        if int(frame_ids[-1] * rate) < int(frame_id * rate):
            frame_ids.append(frame_id)
    if len(frame_ids) > max_len:
        frame_ids = [frame_ids[(j * len(frame_ids)) // max_len] for j in range(max_len)]
    return frame_ids


def hcstvg_frame_ids(img_num: int, fps: float = 5, max_len: int = 200) -> list[int]:
    """HC-STVG's evaluated frames: the whole 20-s clip (frames 0 .. img_num - 2) at ``fps``."""
    video_fps = img_num / 20
    return sample_frame_ids(0, img_num - 1, video_fps, fps, max_len)


def box_iou_xyxy(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two [x1, y1, x2, y2] boxes as TubeDETR's ``np_box_iou`` (no +1 pixel). Two boxes without area
    (where TubeDETR divides 0 by 0) score 0."""
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = w * h
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass(frozen=True)
class TubeTarget:
    """One query's ground truth: the evaluated frames, the true span [start, end) and its boxes."""

    key: str
    frame_ids: list[int]
    start: int
    end: int
    boxes: dict[int, BoxXYXY] = field(default_factory=dict)  # every sampled frame inside [start, end)
    num_frames: int | None = None  # frames of the video, to reject predictions outside it
    qtype: str = ""


def _span_iou(gt: tuple[int, int], pred: tuple[int, int]) -> float:
    max_start, min_end = max(gt[0], pred[0]), min(gt[1], pred[1])
    if min_end <= max_start:
        return 0.0
    inter = min_end - max_start
    return inter / ((gt[1] - gt[0]) + (pred[1] - pred[0]) - inter)


def tube_scores(target: TubeTarget, boxes: Mapping[int, Sequence[float]] | None) -> tuple[float, float]:
    """(tIoU, vIoU) of one query, as fractions; ``boxes`` is {frame number: [x1, y1, x2, y2]}."""
    if not boxes:
        return 0.0, 0.0
    for frame, box in boxes.items():
        if len(box) != 4:
            raise MetricInputError(f"{target.key}: frame {frame}: a box is [x1, y1, x2, y2], got {list(box)}",
                                   "predictions")
        if frame < 0 or (target.num_frames is not None and frame >= target.num_frames):
            raise MetricInputError(f"{target.key}: frame {frame} is outside the video's {target.num_frames} "
                                   "frames", "predictions")
    pred = (min(boxes), max(boxes) + 1)
    gt = (target.start, target.end)
    tiou = _span_iou(gt, pred)
    min_start, max_end = min(gt[0], pred[0]), max(gt[1], pred[1])
    max_start, min_end = max(gt[0], pred[0]), min(gt[1], pred[1])
    union = [f for f in target.frame_ids if min_start <= f < max_end]
    total = 0.0
    for f in target.frame_ids:
        if max_start <= f < min_end and f in target.boxes and f in boxes:
            total += box_iou_xyxy(boxes[f], target.boxes[f])
    return tiou, total / max(len(union), 1)


def stvg_metrics(targets: Sequence[TubeTarget], predictions: Mapping[str, Mapping[int, Sequence[float]]],
                 thresholds: tuple[float, ...] = (0.3, 0.5)) -> dict[str, float]:
    """``m_tIoU``, ``m_vIoU`` and ``vIoU@R`` (percent) over ``targets``; ``predictions`` maps a target's key to
    its boxes per frame. A prediction for a key that is not a target is an error."""
    if not targets:
        raise MetricInputError("no queries to score", "annotations")
    unknown = sorted(set(predictions) - {t.key for t in targets})
    if unknown:
        raise MetricInputError(f"{len(unknown)} predictions for keys not in the annotations, e.g. {unknown[:3]}",
                               "predictions")
    tious, vious = [], []
    for t in targets:
        tiou, viou = tube_scores(t, predictions.get(t.key))
        tious.append(tiou)
        vious.append(viou)
    n = len(targets)
    out = {"m_tIoU": 100.0 * sum(tious) / n, "m_vIoU": 100.0 * sum(vious) / n}
    for r in thresholds:
        out[f"vIoU@{r}"] = 100.0 * sum(v > r for v in vious) / n
    return out


def hcstvg_targets(videos: Sequence) -> list[TubeTarget]:
    """Targets of HC-STVG clips (``xmodal.data.benchmarks.hc_stvg.HCSTVGVideo``), keyed by annotation key.
    Boxes [x, y, w, h] become [x, y, x + w, y + h] as the evaluator converts them."""
    out = []
    for v in videos:
        frame_ids = hcstvg_frame_ids(v.img_num)
        end = v.st_frame + len(v.bbox)
        boxes = {}
        for f in frame_ids:
            if v.st_frame <= f < end:
                x1, y1, w, h = v.bbox[f - v.st_frame]
                boxes[f] = (x1, y1, x1 + w, y1 + h)
        out.append(TubeTarget(v.key, frame_ids, v.st_frame, end, boxes, v.img_num))
    return out


def vidstg_targets(queries: Sequence, vidor: Mapping) -> list[TubeTarget]:
    """Targets of VidSTG sentences (``vidstg.VidSTGQuery``) keyed by their number as text, with boxes from the
    VidOR trajectories (``{video_id: VidORVideo}``), converted through [x, y, w, h] as TubeDETR's preprocessing
    does (so x2 is ``xmin + (xmax - xmin)``, bit for bit)."""
    out = []
    for q in queries:
        v = q.video
        if v.vid not in vidor:
            raise MetricInputError(f"video {v.vid}: no VidOR annotation file", "vidor")
        track = vidor[v.vid].boxes.get(q.sentence.target_id)
        if track is None:
            raise MetricInputError(f"video {v.vid}: no trajectory for target {q.sentence.target_id}", "vidor")
        frame_ids = sample_frame_ids(v.used_segment[0], v.used_segment[1], v.fps)
        start, end = v.temporal_gt
        boxes = {}
        for f in frame_ids:
            if start <= f < end:
                if f not in track:
                    raise MetricInputError(f"video {v.vid}: target {q.sentence.target_id} has no box on frame {f}",
                                           "vidor")
                xmin, ymin, xmax, ymax = track[f]
                w, h = xmax - xmin, ymax - ymin
                boxes[f] = (xmin, ymin, xmin + w, ymin + h)
        out.append(TubeTarget(str(q.index), frame_ids, start, end, boxes, v.frame_count, q.qtype))
    return out
