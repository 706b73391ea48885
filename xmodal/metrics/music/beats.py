"""Beat coverage and beat hit of D2M-GAN / CDCD, and a tolerance-window beat F-measure.

Reference: L-YeZhu/Beats_Scores ``beats_scores.py`` (identical to CDCD ``inference/inference_aist.py``):

- audio at 22050 Hz mono (``librosa.load``'s default, soxr_hq resampling);
- ``librosa.onset.onset_detect(y, sr, wait=1, delta=0.2, pre_avg=1, post_avg=1, post_max=1, units='time')``;
- one bin per second, ``n = ceil(len / sr)``, ``bins[int(trunc(t))] = 1`` for every onset time ``t``;
- coverage = sum(generated bins) / sum(reference bins) (can exceed 1),
  hit = #(reference bin = 1 and generated bin = 1) / sum(reference bins);
- the mean over clips, paired by sorted file name (see ``xmodal eval music``).

These are one-second onset bins, not beats: dense music saturates near 1. The F-measure adds a stricter view:
beats tracked with ``librosa.beat.beat_track`` in both clips, matched one-to-one within +-70 ms, as
``mir_eval.beat.f_measure`` (mir_eval 0.8.2) computes it (no trimming of the first 5 s unless
``min_beat_time`` is given, which is what ``mir_eval.beat.evaluate`` does). Beat times are validated as
mir_eval validates them (1-D, increasing, at most 30000 s) and rejected with a typed error otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xmodal.errors import EmptyInputError, MetricInputError, NonFiniteError, ShapeError, require_module

BEAT_SR = 22050
ONSET_KWARGS = dict(wait=1, delta=0.2, pre_avg=1, post_avg=1, post_max=1)
MAX_TIME = 30000.0  # seconds; mir_eval.beat.MAX_TIME: a later time is almost surely not in seconds


@dataclass
class BeatScores:
    """Per-clip beat scores."""

    coverage: float
    hit: float
    f_measure: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def as_mono(audio, name: str) -> np.ndarray:
    """float32 (samples,) from numpy or torch mono audio; typed errors for bad shape, empty or non-finite."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ShapeError(f"expected mono audio (samples,), got shape {x.shape}", source=name)
    if x.size == 0:
        raise EmptyInputError("audio is empty", source=name)
    if not np.all(np.isfinite(x)):
        raise NonFiniteError("audio holds NaN or infinity", source=name)
    return x


def _at_beat_rate(audio, sr: int, name: str) -> np.ndarray:
    x = as_mono(audio, name)
    if sr != BEAT_SR:
        librosa = require_module("librosa", extra="music")
        x = librosa.resample(x, orig_sr=sr, target_sr=BEAT_SR)  # soxr_hq, as librosa.load
    return x


def onset_bins(audio, sr: int = BEAT_SR) -> np.ndarray:
    """The reference's ``beat_detect``: int array with one 0/1 bin per second (``ceil(len/sr)`` bins)."""
    librosa = require_module("librosa", extra="music")
    x = _at_beat_rate(audio, sr, "audio")
    onsets = librosa.onset.onset_detect(y=x, sr=BEAT_SR, units="time", **ONSET_KWARGS)
    bins = np.zeros(int(np.ceil(len(x) / BEAT_SR)), dtype=np.int64)
    bins[np.trunc(onsets).astype(np.int64)] = 1
    return bins


def check_times(times: Any, name: str) -> np.ndarray:
    """Event times in seconds as float64 (n,), validated as ``mir_eval.util.validate_events`` does: 1-D,
    finite, in increasing order and at most 30000 s. A typed error names ``name`` otherwise."""
    if hasattr(times, "detach"):
        times = times.detach().cpu().numpy()
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"expected event times in seconds, got {type(times).__name__}", name) from exc
    if t.ndim != 1:
        raise ShapeError(f"expected a 1-D array of event times in seconds, got shape {t.shape}", name)
    if not np.all(np.isfinite(t)):
        raise NonFiniteError("event times hold NaN or infinity", name)
    if t.size and t.max() > MAX_TIME:
        raise MetricInputError(
            f"an event at {t.max():g} s is later than {MAX_TIME:g} s: are the times in seconds?", name
        )
    if np.any(np.diff(t) < 0):
        first = int(np.flatnonzero(np.diff(t) < 0)[0])
        raise MetricInputError(
            f"event times must be in increasing order; [{first + 1}] = {t[first + 1]:g} s follows "
            f"[{first}] = {t[first]:g} s",
            name,
        )
    return t


def _check_bins(bins: Any, name: str) -> np.ndarray:
    b = np.asarray(bins)
    if b.ndim != 1:
        raise ShapeError(f"expected a 1-D vector of one-second onset bins, got shape {b.shape}", name)
    if b.size and not np.isin(b, (0, 1)).all():
        raise MetricInputError("onset bins must be 0 or 1", name)
    return b


def coverage_hit(reference_bins: np.ndarray, generated_bins: np.ndarray) -> tuple[float, float]:
    """Coverage and hit from two onset-bin vectors (the reference's ``beat_scores``)."""
    reference_bins = _check_bins(reference_bins, "reference_bins")
    generated_bins = _check_bins(generated_bins, "generated_bins")
    if len(reference_bins) != len(generated_bins):
        raise ShapeError(
            f"reference and generated clips must have the same length in seconds, got "
            f"{len(reference_bins)} and {len(generated_bins)} one-second bins"
        )
    total = int(np.sum(reference_bins))
    if total == 0:
        raise EmptyInputError(
            "the reference clip has no onsets, so coverage and hit are undefined "
            "(the reference script divides by zero)"
        )
    cover = int(np.sum(generated_bins))
    hit = int(np.sum((reference_bins == 1) & (generated_bins == 1)))
    return cover / total, hit / total


def beat_times(audio, sr: int = BEAT_SR) -> np.ndarray:
    """Beat times in seconds from ``librosa.beat.beat_track`` at 22050 Hz (default settings)."""
    librosa = require_module("librosa", extra="music")
    x = _at_beat_rate(audio, sr, "audio")
    _, beats = librosa.beat.beat_track(y=x, sr=BEAT_SR, units="time")
    return np.asarray(beats, dtype=np.float64)


def beat_f_measure(
    reference_beats: np.ndarray, estimated_beats: np.ndarray, window: float = 0.07, min_beat_time: float = 0.0
) -> float:
    """``mir_eval.beat.f_measure``: one-to-one matches within +-``window`` seconds, F1 of precision/recall.

    A greedy sweep over sorted times gives a maximum matching here: with one window width, the candidates
    of successive references form monotone intervals. Hits use mir_eval's test,
    ``est - window <= ref <= est + window``. Empty input scores 0, as in mir_eval. Times must be 1-D, sorted
    and in seconds (:func:`check_times`), as ``mir_eval.beat.validate`` requires.
    """
    ref = check_times(reference_beats, "reference_beats")
    est = check_times(estimated_beats, "estimated_beats")
    ref, est = ref[ref >= min_beat_time], est[est >= min_beat_time]
    if ref.size == 0 or est.size == 0:
        return 0.0
    matched, i, j = 0, 0, 0
    while i < ref.size and j < est.size:
        if ref[i] < est[j] - window:
            i += 1
        elif ref[i] > est[j] + window:
            j += 1
        else:
            matched += 1
            i += 1
            j += 1
    precision, recall = matched / est.size, matched / ref.size
    if precision == 0 and recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def beat_scores(reference_audio, generated_audio, sr: int = BEAT_SR, f_window: float = 0.07) -> BeatScores:
    """Beat coverage, beat hit (D2M-GAN/CDCD) and beat F-measure (mir_eval, +-70 ms) of one clip pair.

    Both clips are mono numpy or torch at rate ``sr`` (resampled to 22050 Hz when different). Clips whose
    lengths differ in whole seconds raise :class:`ShapeError` (the reference asserts equal bin counts); a
    reference without onsets raises :class:`EmptyInputError`.
    """
    ref = _at_beat_rate(reference_audio, sr, "reference_audio")
    gen = _at_beat_rate(generated_audio, sr, "generated_audio")
    cov, hit = coverage_hit(onset_bins(ref), onset_bins(gen))
    f1 = beat_f_measure(beat_times(ref), beat_times(gen), window=f_window)
    return BeatScores(coverage=cov, hit=hit, f_measure=f1)
