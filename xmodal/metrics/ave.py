"""AVE (audio-visual event localisation) metrics, as YapengTian/AVE-ECCV18 computes them.

- :func:`ave_segment_accuracy`: ``supervised_main.py:compute_acc``, the fraction of all 1-s segments whose
  predicted label (an event class or ``background``) equals the ground truth, in percent.
- :func:`cross_modal_localization_accuracy`: ``cmm_test.py`` (A2V and V2A). A clip's event segments are given
  in one modality and a window of the same length is placed in the other; the clip is correct only when the
  window starts where the event does (so the span matches exactly). Clips whose event fills all 10 segments are
  skipped, as the reference does. :func:`best_window` is the reference's window search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from xmodal.errors import MetricInputError, ShapeError

__all__ = ["ave_segment_accuracy", "best_window", "cross_modal_localization_accuracy"]


def ave_segment_accuracy(ground_truth: Mapping[str, Sequence[str]], predictions: Mapping[str, Sequence[str]],
                         source: str | None = None) -> float:
    """``100 * correct segments / all segments`` over the clips of ``ground_truth`` (``{id: labels}``).

    A clip missing from ``predictions`` or a label list whose length differs from the ground truth's is a
    MetricInputError naming ``source``; predictions for other clips are ignored."""
    if not ground_truth:
        raise MetricInputError("no annotated clips", source)
    correct = total = 0
    for clip, labels in ground_truth.items():
        if clip not in predictions:
            raise MetricInputError(f"no prediction for clip {clip!r}", source)
        pred = predictions[clip]
        if isinstance(pred, str) or len(pred) != len(labels):
            raise MetricInputError(f"clip {clip!r} needs a list of {len(labels)} labels, got {pred!r}", source)
        correct += sum(p == g for p, g in zip(pred, labels))
        total += len(labels)
    return 100 * correct / total


def best_window(pair_distance: np.ndarray) -> int:
    """Start of the best window, as cmm_test.py: ``pair_distance[t, i]`` is the distance between segment ``t``
    of the searched modality and the ``i``-th event segment of the given one; the window starting at ``s``
    scores ``sum_i pair_distance[s + i, i]`` and the lowest score wins (first on ties)."""
    d = np.asarray(pair_distance, dtype=np.float64)
    if d.ndim != 2 or not 0 < d.shape[1] <= d.shape[0]:
        raise ShapeError(f"expected (segments, event length) distances with 0 < length <= segments, got {d.shape}")
    length = d.shape[1]
    scores = [sum(d[s + i, i] for i in range(length)) for s in range(d.shape[0] - length + 1)]
    return int(np.argmin(np.array(scores, dtype=np.float32)))  # the reference casts the scores to float32


def cross_modal_localization_accuracy(event_masks: Sequence[Sequence[int]],
                                      predicted_spans: Sequence[tuple[int, int]]) -> float:
    """Percent of clips localised exactly. ``event_masks[k]`` marks clip k's event segments (0/1, length 10);
    ``predicted_spans[k]`` is the half-open ``(start, end)`` window placed in the other modality."""
    if len(event_masks) != len(predicted_spans):
        raise MetricInputError(f"{len(event_masks)} clips but {len(predicted_spans)} predicted spans")
    counted = correct = 0
    for k, (mask, (start, end)) in enumerate(zip(event_masks, predicted_spans)):
        m = np.asarray(mask)
        if m.ndim != 1 or not np.isin(m, (0, 1)).all():
            raise MetricInputError(f"clip {k}: the event mask must be a 0/1 vector, got {mask!r}")
        segments = np.flatnonzero(m)
        if len(segments) == 0:
            raise MetricInputError(f"clip {k} has no event segment to localise")
        if len(segments) == len(m):
            continue  # a full-length event is skipped by the reference
        counted += 1
        correct += int(start == segments[0] and end - start == len(segments))
    if not counted:
        raise MetricInputError("every clip's event fills the whole clip: nothing to localise")
    return 100 * correct / counted
