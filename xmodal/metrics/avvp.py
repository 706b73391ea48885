"""Audio-visual video parsing (LLP) F-scores, as YapengTian/AVVP-ECCV20 ``utils/eval_metrics.py`` and
``main_avvp.py:eval`` compute them.

Per video, predictions and ground truth are ``(classes, 10)`` 0/1 grids for audio and visual; the audio-visual
grids are their products. Segment level: per class ``F = 2TP / (2TP + FP + FN)`` over the 10 segments, averaged
over the classes with any prediction or any ground truth; a video where no class has either scores 1.0.
Event level: runs of consecutive ones are events; a predicted event is a TP when it overlaps *any* ground-truth
event of its class with intersection >= 0.5 x union (so one ground-truth event can validate several
predictions), else an FP; a ground-truth event that no prediction overlaps so is an FN. ``event`` (Event@AV)
pools the audio and visual TP/FP/FN per class before the F-score; ``type`` (Type@AV) is the mean of the audio,
visual and audio-visual values. Means over videos, x100, unrounded. The reference hard-codes 25 classes; here
the class count is the grids' first axis.

:func:`avvp_postprocess` is the prediction side of ``main_avvp.py``: frame probabilities >= 0.5 AND video-level
probability >= 0.5 (the "filter out false positive events with predicted weak labels" step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xmodal.errors import MetricInputError, ShapeError

__all__ = ["avvp_postprocess", "avvp_scores", "event_level", "segment_level"]


def _f_or_one(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    # Classes with neither predictions nor ground truth are skipped; nothing at all is a perfect 1.0.
    f = [2 * tp[c] / (2 * tp[c] + (fn + fp)[c]) for c in range(len(tp)) if (tp + fp)[c] != 0 or (tp + fn)[c] != 0]
    return 1.0 if not f else float(sum(f) / len(f))  # sequential sum, as the reference


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.sum(pred * gt, axis=1), np.sum(pred * (1 - gt), axis=1), np.sum((1 - pred) * gt, axis=1))


def segment_level(pred_a: np.ndarray, pred_v: np.ndarray, pred_av: np.ndarray, gt_a: np.ndarray,
                  gt_v: np.ndarray, gt_av: np.ndarray) -> tuple[float, float, float, float]:
    """One video's segment-level ``(F_audio, F_visual, F_event, F_audiovisual)`` (the reference's return order)."""
    return _four_f(_segment_counts, pred_a, pred_v, pred_av, gt_a, gt_v, gt_av)


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of ones as half-open ``(start, end)``."""
    runs, start = [], None
    for t, v in enumerate(row.tolist() + [0]):
        if v == 1 and start is None:
            start = t
        elif v != 1 and start is not None:
            runs.append((start, t))
            start = None
    return runs


def _matches(x: tuple[int, int], y: tuple[int, int]) -> bool:
    inter = max(0, min(x[1], y[1]) - max(x[0], y[0]))
    return inter >= 0.5 * ((x[1] - x[0]) + (y[1] - y[0]) - inter)


def _event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = pred.shape[0]
    tp, fp, fn = np.zeros(n), np.zeros(n), np.zeros(n)
    for c in range(n):
        p, g = _runs(pred[c]), _runs(gt[c])
        hits = sum(any(_matches(e, h) for h in g) for e in p)
        tp[c], fp[c] = hits, len(p) - hits
        fn[c] = sum(not any(_matches(h, e) for e in p) for h in g)
    return tp, fp, fn


def event_level(pred_a: np.ndarray, pred_v: np.ndarray, pred_av: np.ndarray, gt_a: np.ndarray,
                gt_v: np.ndarray, gt_av: np.ndarray) -> tuple[float, float, float, float]:
    """One video's event-level ``(F_audio, F_visual, F_event, F_audiovisual)``."""
    return _four_f(_event_counts, pred_a, pred_v, pred_av, gt_a, gt_v, gt_av)


Counts = tuple[np.ndarray, np.ndarray, np.ndarray]


def _four_f(counts: Callable[[np.ndarray, np.ndarray], Counts], pred_a: np.ndarray, pred_v: np.ndarray,
            pred_av: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray,
            gt_av: np.ndarray) -> tuple[float, float, float, float]:
    """F of audio, visual, the event (audio and visual counts pooled) and audio-visual, from per-class
    ``(tp, fp, fn)`` that ``counts`` gives (segment or event level)."""
    tp_a, fp_a, fn_a = counts(pred_a, gt_a)
    tp_v, fp_v, fn_v = counts(pred_v, gt_v)
    tp_av, fp_av, fn_av = counts(pred_av, gt_av)
    return (_f_or_one(tp_a, fp_a, fn_a), _f_or_one(tp_v, fp_v, fn_v),
            _f_or_one(tp_a + tp_v, fp_a + fp_v, fn_a + fn_v), _f_or_one(tp_av, fp_av, fn_av))


def _grid(x: np.ndarray, name: str, shape: tuple[int, ...] | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or (shape is not None and a.shape != shape):
        raise ShapeError(f"expected a (classes, segments) grid{'' if shape is None else f' of shape {shape}'}, "
                         f"got {a.shape}", name)
    if not np.isin(a, (0, 1)).all():
        raise MetricInputError("grids must hold only 0 and 1 (threshold probabilities first)", name)
    return a.astype(np.int64)


def avvp_scores(gt_audio: Sequence[np.ndarray], gt_visual: Sequence[np.ndarray], pred_audio: Sequence[np.ndarray],
                pred_visual: Sequence[np.ndarray]) -> dict[str, float]:
    """Segment- and event-level F-scores in percent over videos, from per-video ``(classes, 10)`` 0/1 grids.

    Keys: ``segment_{audio,visual,av,type,event}`` and ``event_{audio,visual,av,type,event}``."""
    n = len(gt_audio)
    if not n or not (len(gt_visual) == len(pred_audio) == len(pred_visual) == n):
        raise MetricInputError(f"need the same positive number of videos everywhere, got {len(gt_audio)}, "
                               f"{len(gt_visual)}, {len(pred_audio)} and {len(pred_visual)}")
    seg, evt = [], []
    for i in range(n):
        ga = _grid(gt_audio[i], f"ground truth audio of video {i}", None)
        gv = _grid(gt_visual[i], f"ground truth visual of video {i}", ga.shape)
        pa = _grid(pred_audio[i], f"predicted audio of video {i}", ga.shape)
        pv = _grid(pred_visual[i], f"predicted visual of video {i}", ga.shape)
        seg.append(segment_level(pa, pv, pa * pv, ga, gv, ga * gv))
        evt.append(event_level(pa, pv, pa * pv, ga, gv, ga * gv))
    out: dict[str, float] = {}
    for level, rows in (("segment", np.array(seg)), ("event", np.array(evt))):
        a, v, e, av = (100 * np.mean(np.ascontiguousarray(rows[:, k])) for k in range(4))
        out |= {f"{level}_audio": float(a), f"{level}_visual": float(v), f"{level}_av": float(av),
                f"{level}_type": float((av + a + v) / 3.0), f"{level}_event": float(e)}
    return {k: out[k] for k in ("segment_audio", "segment_visual", "segment_av", "segment_type", "segment_event",
                                "event_audio", "event_visual", "event_av", "event_type", "event_event")}


def avvp_postprocess(audio_frame_probs: np.ndarray, visual_frame_probs: np.ndarray, video_probs: np.ndarray,
                     threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment probabilities ``(segments, classes)`` and video-level probabilities ``(classes,)`` -> the
    ``(classes, segments)`` 0/1 audio and visual grids of main_avvp.py: ``(P >= threshold)`` masked by
    ``(video >= threshold)``. Their product is the audio-visual prediction."""
    pa, pv, o = (np.asarray(x, dtype=np.float64) for x in (audio_frame_probs, visual_frame_probs, video_probs))
    if pa.ndim != 2 or pv.shape != pa.shape or o.shape != (pa.shape[1],):
        raise ShapeError(f"expected (segments, classes) frame probabilities and (classes,) video probabilities, got "
                         f"{pa.shape}, {pv.shape} and {o.shape}")
    keep = (o >= threshold).astype(np.int64)[None, :]
    return (((pa >= threshold) * keep).T.copy(), ((pv >= threshold) * keep).T.copy())
