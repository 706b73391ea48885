"""Structureness indicator SI(low, high) of Wu and Yang's MusDr (Jazz Transformer, ISMIR 2020).

Reference: slSeanWU/MusDr ``run_python_scapeplot.py`` + ``mueller_audio_tools`` (Mueller's FMP notebooks
C3/C4: chroma features, path-enhanced transposition-invariant SSM, audio thumbnailing fitness scape plot) and
``musdr/eval_metrics.py::compute_structure_indicator``.

The reference fitness scape plot runs, for each of the N(N+1)/2 segments (start, length), a dynamic programme
over an N x (length+1) matrix and then backtracks the optimal path family: O(N^4/6) Python steps, minutes for
a two-minute piece (N = 240 frames at 2 Hz). Here every segment runs at once, row by row. The backtracking is
folded into the forward pass: the predecessor the reference's backtracking would pick at a cell depends only
on already-computed D values, so each cell carries the statistics of the path it would be traced back along
(number of cells, bottom row). Only two rows of D are kept, and the elevator column's path-family statistics
are accumulated per row. Every value is the same float64 operation as in the reference, so the plot is equal
to it (not only close).
"""

from __future__ import annotations

import numpy as np

from xmodal.errors import (
    EmptyInputError,
    MetricInputError,
    MissingDependencyError,
    SampleRateError,
    ShapeError,
    require_module,
)
from xmodal.metrics.music import scape_kernel

# MusDr's settings (run_python_scapeplot.py and compute_SM_from_filename's defaults).
ANALYSIS_SR = 22050
CHROMA_HOP, CHROMA_NFFT = 2205, 4410  # 10 Hz chroma
SMOOTH_LEN, DOWNSAMPLE = 21, 5  # boxcar smoothing, then 2 Hz
SSM_SMOOTH_LEN = 16
FEATURE_RATE = 2.0  # Hz of the SSM and scape plot
REL_THRESHOLD, PENALTY = 0.25, -2.0

# D cells per row processed together; small enough to stay in cache.
_CHUNK_CELLS = 60_000


def tempo_rel_set(low: float = 0.5, high: float = 2.0, num: int = 7) -> np.ndarray:
    """Logarithmically spaced relative tempi (Mueller's ``compute_tempo_rel_set``)."""
    return np.exp(np.linspace(np.log(low), np.log(high), num))


def chroma_features(audio: np.ndarray, sr: int = ANALYSIS_SR) -> np.ndarray:
    """Smoothed, 2 Hz, L2-normalised chroma (12, frames) as MusDr computes it from 22050 Hz audio."""
    librosa = require_module("librosa", extra="music")
    from scipy import signal

    if sr != ANALYSIS_SR:
        raise SampleRateError(f"chroma features need {ANALYSIS_SR} Hz audio, got {sr} Hz")
    chroma = librosa.feature.chroma_stft(
        y=audio, sr=sr, tuning=0, norm=2, hop_length=CHROMA_HOP, n_fft=CHROMA_NFFT
    )
    kernel = signal.get_window("boxcar", SMOOTH_LEN)[None, :]
    smooth = signal.convolve(chroma, kernel, mode="same") / SMOOTH_LEN
    x = smooth[:, ::DOWNSAMPLE]
    # Columns with an L2 norm at or below 0.001 become the unit vector 1/sqrt(12), as in the reference.
    norms = np.sqrt(np.sum(x**2, axis=0))
    out = np.full(x.shape, 1.0 / np.sqrt(x.shape[0]))
    keep = norms > 0.001
    out[:, keep] = x[:, keep] / norms[keep]
    return out


def _resample_index(n_from: int, n_to: int) -> np.ndarray:
    idx = np.around(np.arange(1, n_to + 1) / n_to * n_from, 0) - 1
    return np.maximum(idx, 0).astype(np.int64)


def _smooth_diagonals(s: np.ndarray, length: int, tempi: np.ndarray, backward: bool) -> np.ndarray:
    """Mueller's ``filter_diag_mult_SM``: average along diagonals of several slopes, max over slopes."""
    n, m = s.shape
    out = np.zeros((m, n))
    for tempo in tempi:
        m_ceil = int(np.ceil(n / tempo))
        s_res = s[:, _resample_index(n, m_ceil)]
        ext = np.zeros((m + length, m_ceil + length))
        acc = np.zeros((m, m_ceil))
        if backward:
            ext[length:, length:] = s_res
            for pos in range(length):  # same summation order as the reference, so equal bits
                acc = acc + ext[length - pos : m + length - pos, length - pos : m_ceil + length - pos]
        else:
            ext[:m, :m_ceil] = s_res
            for pos in range(length):
                acc = acc + ext[pos : m + pos, pos : m_ceil + pos]
        acc = acc / length
        out = np.maximum(out, acc[:, _resample_index(m_ceil, n)])
    return out


def self_similarity(
    chroma: np.ndarray,
    *,
    smooth_len: int = SSM_SMOOTH_LEN,
    tempi: np.ndarray | None = None,
    shifts: int = 12,
    rel_threshold: float = REL_THRESHOLD,
    penalty: float = PENALTY,
) -> np.ndarray:
    """Path-enhanced, transposition-invariant, thresholded SSM with unit diagonal (MusDr's settings)."""
    tempi = tempo_rel_set() if tempi is None else tempi
    k = chroma.shape[0]
    ssm = None
    for shift in range(shifts):
        shifted = np.roll(chroma, shift % k, axis=0)
        s = np.dot(shifted.T, chroma)
        s = np.maximum(
            _smooth_diagonals(s, smooth_len, tempi, False), _smooth_diagonals(s, smooth_len, tempi, True)
        )
        ssm = s if ssm is None else np.maximum(s, ssm)
    assert ssm is not None
    return threshold_relative(ssm, rel_threshold, penalty)


def threshold_relative(s: np.ndarray, rel_threshold: float, penalty: float) -> np.ndarray:
    """Keep the top ``rel_threshold`` share of cells scaled to [0, 1]; the rest get ``penalty``; diag = 1."""
    if np.min(s) < 0:
        raise MetricInputError("SSM entries must be non-negative before thresholding")
    out = np.copy(s)
    n_below = int(np.round(out.size * (1 - rel_threshold)))
    if n_below < out.size:
        out[out < np.sort(out.flatten("F"))[n_below]] = 0
    else:
        out[:] = 0
    positive = out > 0
    lo = np.min(out[positive]) if positive.any() else 0.0
    hi = np.max(out)
    if hi > lo:
        zero = out == 0
        out = (out - lo) / (hi - lo)
        out[zero] = penalty
    np.fill_diagonal(out, 1.0)
    return out


def fitness_scape_plot(ssm: np.ndarray, method: str = "auto") -> np.ndarray:
    """Mueller's fitness scape plot as a (length-1, start) matrix, zeros where start+length > N.

    Equal to MusDr's ``compute_fitness_scape_plot(S)[0]``: same DP, same backtracking tie rules (including
    its restricted predecessor sets at m == 2 and n <= 2), same fitness formula. ``method``: ``"numba"``
    (the compiled kernel of ``scape_kernel``, one segment at a time), ``"numpy"`` (every segment of a chunk
    at once, row by row) or ``"auto"`` (numba when installed). Both give the same bits.
    """
    s = np.asarray(ssm, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ShapeError(f"SSM must be square (N, N), got {s.shape}")
    n_rows = s.shape[0]
    if n_rows == 0:
        raise EmptyInputError("SSM is empty")
    if not np.all(np.isfinite(s)):
        raise MetricInputError("SSM has NaN or infinite entries")
    if method not in ("auto", "numba", "numpy"):
        raise MetricInputError(f"method must be 'auto', 'numba' or 'numpy', got {method!r}")
    if method == "numba" and not scape_kernel.AVAILABLE:
        raise MissingDependencyError(
            "method='numba' needs numba (it comes with librosa: pip install xmodal[music])"
        )
    if method != "numpy" and scape_kernel.AVAILABLE:
        plot, complete = scape_kernel.scape_plot(s)
        if not complete:
            raise MetricInputError(
                "a segment has an empty optimal path family (SSM without a unit diagonal?)"
            )
        return plot
    # Every segment (pair p: start[p], length[p]), ordered by length, then start.
    lengths = np.concatenate([np.full(n_rows - k + 1, k) for k in range(1, n_rows + 1)])
    starts = np.concatenate([np.arange(n_rows - k + 1) for k in range(1, n_rows + 1)])
    plot = np.zeros((n_rows, n_rows))
    # Chunks of consecutive pairs (similar lengths, so little padding) with about _CHUNK_CELLS D cells per row.
    width = np.cumsum(lengths + 1)  # running total of D cells per row
    lo = 0
    while lo < lengths.size:
        hi = max(int(np.searchsorted(width, width[lo] - (lengths[lo] + 1) + _CHUNK_CELLS, "right")), lo + 1)
        plot[lengths[lo:hi] - 1, starts[lo:hi]] = _fitness_chunk(s, starts[lo:hi], lengths[lo:hi])
        lo = hi
    return plot


def _fitness_chunk(s: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Fitness of the segments (start[p], length[p]); their DP matrices run side by side.

    Each pair's D row is a row of a (P, W) array, W = max length + 1, worked on as one flat contiguous
    vector: in flat indexing (p, m-1) and (p, m-2) are just k-1 and k-2, so one shifted slice serves every
    pair. Columns 0 and 1 (which would read the previous pair) are rewritten afterwards.
    """
    n_rows = s.shape[0]
    n_pairs = start.size
    width = int(length.max()) + 1  # D columns 0..L (column 0 is the elevator)
    rows = np.arange(n_pairs)
    end_flat = rows * width + length  # flat index of each pair's column L
    # seg[p, m] = S[n, start[p] + m - 1] (the S_seg entry that D[n, m] adds): a sliding window over the row
    # padded with one zero column in front and zeros behind; padded columns are never read by a valid cell.
    padded = np.zeros((n_rows, n_rows + width + 1))
    padded[:, 1 : n_rows + 1] = s
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=1)  # (N, N+2, W)
    size = n_pairs * width
    d1 = np.full(size, -np.inf)  # row n-1
    d2 = np.full(size, -np.inf)  # row n-2 (the reference's D[-1] is still -inf at row 1)
    t1 = np.zeros(size, dtype=np.int32)  # packed (count, bottom) of the path traced back from each cell
    t2 = np.zeros(size, dtype=np.int32)
    t_bufs = (np.zeros(size, dtype=np.int32), np.zeros(size, dtype=np.int32))  # row n writes t_bufs[n % 2]
    t_first = np.empty(size - 2, dtype=np.int32)
    tmp = np.empty(size - 2, dtype=np.int32)
    d = np.empty(size)
    best = np.empty(size - 2)
    take = np.empty(size - 2, dtype=bool)
    pack = _pack_base(n_rows)
    # Per row: elevator value, end-column value and its packed path statistics.
    elev = np.empty((n_rows, n_pairs))
    endv = np.empty((n_rows, n_pairs))
    endt = np.empty((n_rows, n_pairs), dtype=np.int32)

    seg = windows[0][start]
    d1[0::width] = 0.0
    d1[1::width] = seg[:, 1]
    t1[1::width] = pack + 0
    elev[0], endv[0], endt[0] = d1[0::width], d1[end_flat], t1[end_flat]
    for n in range(1, n_rows):
        seg = windows[n][start]  # fancy indexing: faster than np.take(out=) on a strided view
        a, b, c = d1[1:-1], d1[:-2], d2[1:-1]  # (n-1, m-1), (n-1, m-2), (n-2, m-1) for cells k = 2..
        ta, tb, tc = t1[1:-1], t1[:-2], t2[1:-1]
        # Backtracking's choice: scan predecessors in the reference's order, keep the first strict max.
        # Selections are arithmetic (x + (y - x) * mask): np.where on random masks is ~10x slower.
        t = t_bufs[n % 2]
        if n > 2:
            np.greater(c, a, out=take)
            np.subtract(tc, ta, out=tmp)
            tmp *= take
            np.add(ta, tmp, out=t_first)
            np.maximum(a, c, out=best)
            np.greater(b, best, out=take)
        else:  # n <= 2: the reference does not look at (n-2, m-1)
            np.copyto(t_first, ta)
            np.greater(b, a, out=take)
            np.maximum(a, c, out=best)
        np.subtract(tb, t_first, out=tmp)
        tmp *= take
        np.add(t_first, tmp, out=t[2:])
        t += pack
        if width > 2:  # m == 2: the reference does not look at (n-1, m-2), the elevator
            t[2::width] = t_first[0::width] + pack
        np.maximum(best, b, out=best)
        np.add(seg.reshape(-1)[2:], best, out=d[2:])
        # Columns 0 and 1 of every pair: the elevator and the first path cell.
        d[0::width] = np.maximum(d1[0::width], d1[end_flat])
        d[1::width] = d[0::width] + seg[:, 1]
        t[1::width] = pack + n  # a path's bottom cell: count 1, bottom row n
        if (
            n == 1 and n_rows == 2 and width > 2
        ):  # here the reference's D[n-2] is the row being filled: redo m = 2
            d[2::width] = seg[:, 2] + np.maximum(np.maximum(d1[2 - 1 :: width], d1[0::width]), d[1::width])
        d2, d1, d = d1, d, d2
        t2, t1 = t1, t
        elev[n], endv[n], endt[n] = d1[0::width], d1[end_flat], t1[end_flat]
    return _fitness_from_rows(elev, endv, endt, length.astype(np.float64), n_rows, pack)


def _fitness_from_rows(
    elev: np.ndarray, endv: np.ndarray, endt: np.ndarray, length: np.ndarray, n_rows: int, pack: int
) -> np.ndarray:
    """Path-family length and coverage by replaying the reference's elevator-column backtracking."""
    n_pairs = length.size
    rows = np.arange(n_pairs)
    # fam[r] = (cells, coverage) of the path family traced back from the elevator cell (r, 0).
    fam_cells = np.zeros((n_rows, n_pairs), dtype=np.int64)
    fam_cov = np.zeros((n_rows, n_pairs), dtype=np.int64)
    for r in range(1, n_rows):
        jump = endv[r - 1] > elev[r - 1]  # strict, as the reference
        cnt, bottom = endt[r - 1] // pack, endt[r - 1] % pack
        via_path_cells = cnt + fam_cells[bottom, rows]
        via_path_cov = (r - 1) - bottom + 1 + fam_cov[bottom, rows]
        fam_cells[r] = np.where(jump, via_path_cells, fam_cells[r - 1])
        fam_cov[r] = np.where(jump, via_path_cov, fam_cov[r - 1])
    last = n_rows - 1
    score = np.maximum(elev[last], endv[last])
    on_path = ~(endv[last] < elev[last])
    cnt, bottom = endt[last] // pack, endt[last] % pack
    cells = np.where(on_path, cnt + fam_cells[bottom, rows], fam_cells[last])
    cov = np.where(on_path, last - bottom + 1 + fam_cov[bottom, rows], fam_cov[last])
    if np.any(cells == 0):
        raise MetricInputError("a segment has an empty optimal path family (SSM without a unit diagonal?)")
    eps = 1e-16
    score_n = (score - length) / (cells + eps)
    coverage_n = (cov - length) / (n_rows + eps)
    return 2 * score_n * coverage_n / (score_n + coverage_n + eps)


def _pack_base(n_rows: int) -> int:
    """Path statistics are packed as count * base + bottom_row in int32: base > any row, count <= rows."""
    base = 1 << int(n_rows).bit_length()
    if (n_rows + 1) * base >= 2**31:
        raise MetricInputError(f"SSM with {n_rows} frames is too long for the scape plot (max ~30000)")
    return base


def center_duration(plot: np.ndarray) -> np.ndarray:
    """Roll row ``l`` by ``l // 2`` (start -> centre), as MusDr's ``read_fitness_mat`` does."""
    out = np.empty_like(plot)
    for length_minus_one in range(plot.shape[0]):
        out[length_minus_one] = np.roll(plot[length_minus_one], length_minus_one // 2)
    return out


def structure_indicator(plot: np.ndarray, low: float, high: float, rate: float = FEATURE_RATE) -> float:
    """MusDr ``compute_structure_indicator``: max fitness over rows [int(low*rate)-1, int(high*rate)).

    ``plot`` is start-duration (as :func:`fitness_scape_plot`) or centre-duration (:func:`center_duration`,
    what MusDr reads): rolling a row does not change its maximum. 0 when ``low`` is beyond the plot.
    """
    if not (low > 0 and high > 0):
        raise MetricInputError(f"low and high must be positive seconds, got low={low}, high={high}")
    lo, hi = int(low * rate) - 1, int(high * rate)
    if lo >= plot.shape[0]:
        return 0.0
    return float(np.max(plot[lo:hi]))


def structureness(audio, sr: int, low: float = 3, high: float = 8) -> float:
    """Structureness indicator SI(low, high) in seconds of an audio clip (MusDr; defaults SI(3, 8)).

    ``audio`` is mono numpy or torch, any rate (resampled to 22050 Hz with librosa's soxr_hq, as
    ``librosa.load`` does in the reference). MusDr reports SI(3, 8), SI(8, 15) and SI(15, 128).
    """
    return structureness_many(audio, sr, [(low, high)])[0]


def structureness_many(audio, sr: int, ranges: list[tuple[float, float]]) -> list[float]:
    """Several SI ranges from one scape plot (the plot is the expensive part)."""
    plot = scape_plot_from_audio(audio, sr)
    return [structure_indicator(plot, lo, hi) for lo, hi in ranges]


def scape_plot_from_audio(audio, sr: int) -> np.ndarray:
    """Audio -> chroma -> SSM -> fitness scape plot (length-1, start), MusDr's pipeline."""
    from xmodal.metrics.music.beats import as_mono

    librosa = require_module("librosa", extra="music")

    x = as_mono(audio, "audio")
    if not np.any(x):
        raise EmptyInputError("structureness needs non-silent audio")
    if sr != ANALYSIS_SR:
        x = librosa.resample(x, orig_sr=sr, target_sr=ANALYSIS_SR)
    chroma = chroma_features(x, ANALYSIS_SR)
    return fitness_scape_plot(self_similarity(chroma))
