"""STOI and ESTOI, equal to pystoi 0.4.1 (Taal et al. 2011; Jensen & Taal 2016) and vectorised over a batch.

pystoi works on one pair at a time with Python loops over frames and segments. Here every step runs on the
whole batch at once:

1. resample to 10 kHz with pystoi's Octave filter (``_resample.resample_to``);
2. drop frames of the clean signal more than 40 dB below its loudest frame (frame 256, hop 128, Hann),
   overlap-add the kept frames and cut them into frames again, as pystoi does, for all signals at once;
3. STFT (nfft 512) of each signal's valid frames only, 15 one-third-octave bands from 150 Hz (contiguous bin
   ranges, summed with reduceat);
4. all 30-frame segments at once (a strided view), masked where a signal has fewer segments than the longest;
   STOI centres and normalises each segment in pystoi's order (see ``_stoi_segments``).
The batch is processed two signals at a time, on one thread per core, so that the arrays stay small.

Differences from pystoi, on purpose: an all-zero clean signal raises EmptyInputError (pystoi returns a
meaningless 0); signals too short to hold one 256-sample frame return 1e-5 like other too-short input (pystoi
raises an unhelpful numpy error); ESTOI does not add pystoi's 2.2e-16 random jitter before normalising, so a
band row that is exactly constant in a segment (digital silence) contributes 0 instead of a random number.

Where agreement is not to 1e-6: a clean signal whose band envelopes repeat to the last bit, such as a tone at
exactly a quarter of 10 kHz given at 10 kHz (each 128-sample hop is 32 whole periods), leaves only rounding
noise in the centred segments, and the score is that noise: pystoi's own value moves by up to 1e-2 when
1e-13 noise is added to the clean signal. There the two implementations (other FFT and band sums) differ
by up to about 5e-3 and neither number means anything.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from xmodal.errors import EmptyInputError, ShapeError
from xmodal.metrics.audio._inputs import check_pair, check_rate, like_input, to_numpy
from xmodal.metrics.audio._resample import resample_to

FS = 10000  # STOI's internal rate
N_FRAME = 256
HOP = N_FRAME // 2
NFFT = 512
NUM_BANDS = 15
MIN_FREQ = 150
N_SEG = 30  # frames per intermediate-intelligibility segment (384 ms)
BETA = -15.0  # lower SDR bound, dB
DYN_RANGE = 40  # dB below the loudest clean frame that still counts as speech
EPS = np.finfo("float").eps
TOO_SHORT = 1e-5  # pystoi's return value when fewer than 30 frames survive
_CHUNK = 2  # signals per block: keeps the per-block arrays to a few MB (2 measured faster than 3 or 4)
_SEG_BLOCK = 512  # segments per step of the segment statistics: 5 s in one step (fewer calls beat cache)


@functools.lru_cache(maxsize=1)
def third_octave_edges() -> np.ndarray:
    """FFT-bin edges of the 15 one-third-octave bands of pystoi ``utils.thirdoct(10000, 512, 15, 150)``.

    pystoi builds a 0/1 band matrix over bins [low_i, high_i); each band's upper edge is the next band's lower
    edge, so the bands are contiguous and summing bins between the 16 edges equals its matrix product."""
    f = np.linspace(0, FS, NFFT + 1)[: NFFT // 2 + 1]
    k = np.arange(NUM_BANDS, dtype=float)
    low = MIN_FREQ * np.power(2.0, (2 * k - 1) / 6)
    high = MIN_FREQ * np.power(2.0, (2 * k + 1) / 6)
    # Band edges snap to the nearest FFT bin; the upper edge bin is excluded, as in the reference.
    lo = np.array([np.argmin(np.square(f - v)) for v in low])
    hi = np.array([np.argmin(np.square(f - v)) for v in high])
    assert np.array_equal(lo[1:], hi[:-1]), "one-third-octave bands are expected to be contiguous"
    return np.append(lo, hi[-1])


@functools.lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    return np.hanning(N_FRAME + 2)[1:-1]  # MATLAB's hanning(256): no zero end points


def _band_envelopes(xy: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Silent-frame removal, STFT and band grouping at 10 kHz for clean and degraded signals stacked as
    ``xy`` (2 * batch, T): clean first. Stacking halves the number of array calls.

    Returns x_tob, y_tob of shape (batch, frames, 15) and the number of valid frames per signal (batch,)."""
    n = xy.shape[-1]
    n_frames = len(range(0, n - N_FRAME, HOP))
    if n_frames < 2:
        empty = np.zeros((batch, 0, NUM_BANDS))
        return empty, empty, np.zeros(batch, dtype=int)
    frames = sliding_window_view(xy, N_FRAME, axis=-1)[:, ::HOP][:, :n_frames]  # (2B, F, 256), a view
    w = _hann()
    # Speech frames are those of the clean signal within 40 dB of its loudest; the degraded one follows.
    x_windowed = frames[:batch] * w  # (B, F, 256)
    energy = 20 * np.log10(np.linalg.norm(x_windowed, axis=-1) + EPS)  # (B, F)
    keep = (np.max(energy, axis=-1, keepdims=True) - DYN_RANGE - energy) < 0
    n_keep = keep.sum(axis=-1)
    # One signal at a time from here: its overlap-add row, STFT and |X|^2 stay a few MB (fewer fresh pages to
    # fault in than whole-chunk arrays), and only its K-1 valid frames are transformed; later frames stay 0 and
    # fall outside every counted segment.
    edges = third_octave_edges()
    starts = 2 * (edges[:-1] - edges[0])  # band starts in the interleaved (re, im) view of bins edges[0]..
    tob = np.zeros((2 * batch, n_frames - 1, NUM_BANDS))
    row = np.empty((n_frames + 1) * HOP)
    padded = np.zeros((n_frames - 1, NFFT))  # the zero half is written once and reused
    for b in range(2 * batch):
        kept = x_windowed[b, keep[b]] if b < batch else frames[b, keep[b - batch]] * w
        k = kept.shape[0]
        if k < 2:
            continue
        # Overlap-add the kept windowed frames at hop 128 (pystoi ``_overlap_and_add``), zero after the last one.
        row[:] = 0.0
        row[: k * HOP].reshape(k, HOP)[:] += kept[:, :HOP]
        row[HOP : (k + 1) * HOP].reshape(k, HOP)[:] += kept[:, HOP:]
        # pystoi re-frames K kept frames into K-1 STFT frames, Hann-windowed and zero-padded to nfft 512.
        m = k - 1
        np.multiply(sliding_window_view(row, N_FRAME)[::HOP][:m], w, out=padded[:m, :N_FRAME])
        spec = sfft.rfft(padded[:m], axis=-1)  # (K-1, 257)
        # Only bins 7..218 fall in a band: squares of their interleaved (re, im) pairs summed over each band's
        # bins give |X|^2 per band in one pass.
        sq = np.square(spec[:, edges[0] : edges[-1]].view(np.float64))
        np.sqrt(np.add.reduceat(sq, starts, axis=-1), out=tob[b, :m])
    return tob[:batch], tob[batch:], np.maximum(n_keep - 1, 0)


def _sumsq(v: np.ndarray, axis: int) -> np.ndarray:
    """Sum of squares along ``axis`` (-1 or -2) of (..., 15, 30) blocks, kept as a broadcastable axis."""
    ss = np.einsum("...ij,...ij->...i" if axis == -1 else "...ij,...ij->...j", v, v)
    return np.expand_dims(ss, axis)


def _stoi_segments(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Per-band correlations of each segment, (..., 30) -> (...,), as in Taal et al. eq. 5-6.

    The 30 frames are the last, contiguous axis. The steps are pystoi's, in its order: scale y to x's energy,
    clip at ``(1 + c) * x``, subtract each vector's mean, divide by (norm + eps), sum the products. The means
    are subtracted explicitly: when a band is stationary over a segment (a tone, a DC tail) the centred vector
    is rounding noise, and the shortcut sum(v^2) - sum(v)^2 / N loses all of it to cancellation."""
    nx = np.sqrt(np.einsum("...j,...j->...", xs, xs))
    ny = np.sqrt(np.einsum("...j,...j->...", ys, ys))
    clip = 10 ** (-BETA / 20)
    yp = ys * (nx / (ny + EPS))[..., None]
    np.minimum(yp, xs * (1 + clip), out=yp)  # bound the SDR at -15 dB
    yp -= np.mean(yp, axis=-1, keepdims=True)
    xc = xs - np.mean(xs, axis=-1, keepdims=True)
    dots = np.einsum("...j,...j->...", yp, xc)
    ny_c = np.sqrt(np.einsum("...j,...j->...", yp, yp))
    nx_c = np.sqrt(np.einsum("...j,...j->...", xc, xc))
    return dots / ((ny_c + EPS) * (nx_c + EPS))


def _unit(v: np.ndarray, axis: int) -> np.ndarray:
    """Subtract the mean and divide by the norm along ``axis``; an all-constant line becomes 0."""
    v = v - np.mean(v, axis=axis, keepdims=True)
    ss = _sumsq(v, axis)
    with np.errstate(divide="ignore"):
        v *= np.where(ss > 0, 1.0 / np.sqrt(ss), 0.0)
    return v


def _estoi_segments(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sum of row- then column-normalised products (Jensen & Taal 2016), (..., 15, 30) -> (...,)."""
    xn = _unit(_unit(xs, axis=-1), axis=-2)
    yn = _unit(_unit(ys, axis=-1), axis=-2)
    return np.einsum("...ij,...ij->...", xn, yn) / N_SEG


def _chunk_scores(x: np.ndarray, y: np.ndarray, fs: int, extended: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a few (b, T) signals and a mask of those that were too short: one array operation per step."""
    xy = np.concatenate([x, y])  # (2b, T): clean then degraded
    if fs != FS:
        xy = resample_to(xy, FS, fs)
    x_tob, y_tob, n_valid = _band_envelopes(xy, len(xy) // 2)
    n_seg = n_valid - N_SEG + 1  # segments per signal
    too_short = n_seg < 1
    if x_tob.shape[1] < N_SEG:
        return np.full(x.shape[0], TOO_SHORT), too_short
    if extended:
        # (b, J, 15, 30): every window of 30 frames, bands first as pystoi stores them.
        xs = sliding_window_view(x_tob, N_SEG, axis=1)
        ys = sliding_window_view(y_tob, N_SEG, axis=1)
        seg_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] = _estoi_segments
    else:
        # STOI treats bands independently: (b, 15, J, 30) windows over contiguous frame rows, so every pass over
        # a window reads adjacent memory.
        xs = np.moveaxis(
            sliding_window_view(np.ascontiguousarray(np.swapaxes(x_tob, 1, 2)), N_SEG, axis=2), 1, 2
        )
        ys = np.moveaxis(
            sliding_window_view(np.ascontiguousarray(np.swapaxes(y_tob, 1, 2)), N_SEG, axis=2), 1, 2
        )

        def band_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.sum(_stoi_segments(a, b), axis=-1)

        seg_fn = band_sum

    # Blocks of segments keep the (b, block, 15, 30) temporaries in cache between the passes.
    per_seg = np.concatenate(
        [
            seg_fn(xs[:, j : j + _SEG_BLOCK], ys[:, j : j + _SEG_BLOCK])
            for j in range(0, xs.shape[1], _SEG_BLOCK)
        ],
        axis=1,
    )  # (b, J)
    in_range = np.arange(per_seg.shape[1])[None, :] < n_seg[:, None]
    total = np.sum(np.where(in_range, per_seg, 0.0), axis=1)
    denom = n_seg if extended else n_seg * NUM_BANDS
    return np.where(too_short, TOO_SHORT, total / np.maximum(denom, 1)), too_short


def _batch_scores(x: np.ndarray, y: np.ndarray, fs: int, extended: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scores for a (B, T) float64 batch at ``fs`` and a mask of the signals that were too short.

    Work goes in chunks of a few signals so that the resampling, (frames x bins) and (segments x 15 x 30)
    blocks stay small enough for the cache. Chunks run on a thread per core: numpy and scipy.fft release the
    GIL in the array operations that make up almost all of the time."""
    starts = range(0, x.shape[0], _CHUNK)
    workers = min(len(starts), os.cpu_count() or 1)

    def run(lo: int) -> tuple[np.ndarray, np.ndarray]:
        return _chunk_scores(x[lo : lo + _CHUNK], y[lo : lo + _CHUNK], fs, extended)

    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    todo = iter(starts)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                lo = next(todo, None)
            if lo is None:
                return
            results[lo] = run(lo)

    # The calling thread works too, beside workers - 1 helpers: its malloc arena is usually warm already, while
    # a fresh thread's arena has to fault in every page of its first chunks' arrays.
    if workers > 1:
        with ThreadPoolExecutor(workers - 1) as pool:
            helpers = [pool.submit(work) for _ in range(workers - 1)]
            work()
            for h in helpers:
                h.result()  # re-raises a helper's exception
    else:
        work()
    parts = [results[lo] for lo in starts]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def stoi(clean: Any, degraded: Any, fs: int, extended: bool = False):
    """Short-time objective intelligibility of ``degraded`` against ``clean`` (pystoi 0.4.1, to 1e-6).

    ``clean`` and ``degraded``: one signal (T,) or a batch (B, T), numpy or torch, same shape. ``fs``: their
    sample rate in Hz. ``extended=True`` gives ESTOI. Returns a float (one numpy signal), an array (B,), or a
    tensor for torch input. Signals with fewer than 30 speech frames score 1e-5 with a RuntimeWarning, as in
    pystoi.
    """
    fs = check_rate(fs, metric="STOI")
    x, y = to_numpy(clean, "clean"), to_numpy(degraded, "degraded")
    check_pair(x, y)
    if x.ndim > 2:
        raise ShapeError(f"expected one signal (T,) or a batch (B, T), got shape {x.shape}", "clean")
    single = x.ndim == 1
    silent = ~np.any(np.atleast_2d(x), axis=-1)
    if np.any(silent):
        where = "clean" if single else f"clean[{int(np.flatnonzero(silent)[0])}]"
        raise EmptyInputError("is digital silence (all zeros); STOI needs a clean speech reference", where)
    x2 = np.atleast_2d(x).astype(np.float64, copy=False)
    y2 = np.atleast_2d(y).astype(np.float64, copy=False)
    scores, too_short = _batch_scores(x2, y2, fs, extended)
    if np.any(too_short):
        which = "" if single else f" (batch items {np.flatnonzero(too_short).tolist()})"
        warnings.warn(
            f"fewer than {N_SEG} STFT frames remain after removing silent frames{which}; "
            f"returning {TOO_SHORT} as pystoi does. Check the clean signal.",
            RuntimeWarning,
            stacklevel=2,
        )
    return like_input(scores[0] if single else scores, clean, single)


def estoi(clean: Any, degraded: Any, fs: int):
    """Extended STOI (Jensen & Taal 2016), as ``pystoi.stoi(..., extended=True)``; see :func:`stoi`."""
    return stoi(clean, degraded, fs, extended=True)
