"""Compiled fitness scape plot: the DP of ``structure._fitness_chunk``, all starts of one length at once.

numba comes with librosa (the ``music`` extra), so wherever chroma features can be computed this kernel is
available; without numba, ``structure.fitness_scape_plot`` falls back to the vectorised numpy route. Both are
equal to the reference bit for bit: every D value is the same float64 addition of the same two operands, and
the predecessor choices use the same strict comparisons in the same order (no fastmath, no reassociation).

For each length L the DPs of all N - L + 1 segments run side by side over N rows and L + 1 columns, with
three rows of D kept. Each cell carries the statistics of the path the reference's backtracking would trace
back from it (number of cells and bottom row), so no backtracking pass is needed; the elevator column's path
families are then replayed row by row as in ``structure._fitness_from_rows``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

# Imported and compiled on first use: importing numba costs about a second, which every `xmodal` command
# would otherwise pay.
AVAILABLE = importlib.util.find_spec("numba") is not None
_compiled: Any = None


def _length_rows(s, length, pack, elev, endv, endt, dd, tt):
    """Run the DP of every segment of one length at once; fill, per row, the elevator value and the end
    column's value and packed path statistics (count * pack + bottom row) of each start.

    D is laid out (column, start) so that the innermost loop runs over starts: S[n, start + m - 1] is then a
    contiguous slice, and the loop is a chain of selections that LLVM vectorises (the comparisons are
    data-dependent coin flips, so branches would mispredict).
    """
    n_rows = s.shape[0]
    n_starts = n_rows - length + 1
    w = length + 1
    dd[:, :w, :n_starts] = -np.inf  # the reference's D[-1] is still -inf at row 1
    tt[:, :w, :n_starts] = 0
    i1, i2, i0 = 0, 1, 2  # rows n-1, n-2 and n of D
    d1 = dd[i1]
    t1 = tt[i1]
    for p in range(n_starts):  # row 0: the elevator starts at 0, the first path cell at S[0, start]
        d1[0, p] = 0.0
        d1[1, p] = s[0, p]
        t1[1, p] = pack
        elev[0, p] = 0.0
        endv[0, p] = d1[length, p]
        endt[0, p] = t1[length, p]
    for n in range(1, n_rows):
        row = s[n]
        d1, d2, d = dd[i1], dd[i2], dd[i0]
        t1, t2, t = tt[i1], tt[i2], tt[i0]
        # Backtracking's choice: predecessors (n-2, m-1), (n-1, m-1), (n-1, m-2) in the reference's order, the
        # first strict maximum wins; max() ties keep the first operand, as np.maximum does on finite values.
        for m in range(2, w):
            a_, b_, c_ = d1[m - 1], d1[m - 2], d2[m - 1]
            ta, tb, tc = t1[m - 1], t1[m - 2], t2[m - 1]
            dm, tm = d[m], t[m]
            srow = row[m - 1 : m - 1 + n_starts]
            if n > 2:
                for p in range(n_starts):
                    a, bb, cc = a_[p], b_[p], c_[p]
                    t_first = tc[p] if cc > a else ta[p]
                    best = a if a >= cc else cc
                    tm[p] = (tb[p] if bb > best else t_first) + pack
                    dm[p] = srow[p] + (bb if bb > best else best)
            else:  # n <= 2: the reference does not trace back to (n-2, m-1)
                for p in range(n_starts):
                    a, bb, cc = a_[p], b_[p], c_[p]
                    best = a if a >= cc else cc
                    tm[p] = (tb[p] if bb > a else ta[p]) + pack
                    dm[p] = srow[p] + (bb if bb > best else best)
        if w > 2:  # m == 2: the reference does not trace back to (n-1, m-2), the elevator
            for p in range(n_starts):
                if n > 2 and d2[1, p] > d1[1, p]:
                    t[2, p] = t2[1, p] + pack
                else:
                    t[2, p] = t1[1, p] + pack
        for p in range(n_starts):  # columns 0 and 1: the elevator and a path's bottom cell (count 1, row n)
            e = d1[0, p] if d1[0, p] >= d1[length, p] else d1[length, p]
            d[0, p] = e
            d[1, p] = e + row[p]
            t[1, p] = pack + n
        if n == 1 and n_rows == 2 and w > 2:  # the reference's D[n-2] is the row being filled: redo m = 2
            for p in range(n_starts):
                x = d1[1, p] if d1[1, p] >= d1[0, p] else d1[0, p]
                x = x if x >= d[1, p] else d[1, p]
                d[2, p] = row[p + 1] + x
        for p in range(n_starts):
            elev[n, p] = d[0, p]
            endv[n, p] = d[length, p]
            endt[n, p] = t[length, p]
        i1, i2, i0 = i0, i1, i2


def _fitness(elev, endv, endt, length, n_starts, pack, fam_cells, fam_cov, out):
    """Path-family length and coverage by replaying the elevator column's backtracking (as
    ``structure._fitness_from_rows``), then the fitness of each start; False if a family is empty."""
    n_rows = elev.shape[0]
    eps = 1e-16
    complete = True
    for p in range(n_starts):
        fam_cells[0] = 0
        fam_cov[0] = 0
        for r in range(1, n_rows):
            if endv[r - 1, p] > elev[r - 1, p]:  # strict, as the reference
                bottom = endt[r - 1, p] % pack
                fam_cells[r] = endt[r - 1, p] // pack + fam_cells[bottom]
                fam_cov[r] = (r - 1) - bottom + 1 + fam_cov[bottom]
            else:
                fam_cells[r] = fam_cells[r - 1]
                fam_cov[r] = fam_cov[r - 1]
        last = n_rows - 1
        score = elev[last, p] if elev[last, p] >= endv[last, p] else endv[last, p]
        if not (endv[last, p] < elev[last, p]):
            bottom = endt[last, p] % pack
            cells = endt[last, p] // pack + fam_cells[bottom]
            cov = last - bottom + 1 + fam_cov[bottom]
        else:
            cells = fam_cells[last]
            cov = fam_cov[last]
        if cells == 0:
            complete = False
            out[p] = 0.0
            continue
        fl = np.float64(length)
        score_n = (score - fl) / (np.float64(cells) + eps)
        coverage_n = (np.float64(cov) - fl) / (np.float64(n_rows) + eps)
        out[p] = 2 * score_n * coverage_n / (score_n + coverage_n + eps)
    return complete


def _scape_plot(s, pack):
    n_rows = s.shape[0]
    plot = np.zeros((n_rows, n_rows))
    elev = np.empty((n_rows, n_rows))
    endv = np.empty((n_rows, n_rows))
    endt = np.empty((n_rows, n_rows), dtype=np.int64)
    dd = np.empty((3, n_rows + 1, n_rows))
    tt = np.empty((3, n_rows + 1, n_rows), dtype=np.int64)
    fam_cells = np.empty(n_rows, dtype=np.int64)
    fam_cov = np.empty(n_rows, dtype=np.int64)
    complete = True
    for length in range(1, n_rows + 1):
        n_starts = n_rows - length + 1
        _length_rows(s, length, pack, elev, endv, endt, dd, tt)
        ok = _fitness(elev, endv, endt, length, n_starts, pack, fam_cells, fam_cov, plot[length - 1])
        complete = complete and ok
    return plot, complete


def _compile() -> Any:
    """The numba-compiled ``_scape_plot``; cache=True keeps the machine code in numba's on-disk cache (a
    few seconds to build once per machine), like librosa's kernels."""
    global _compiled, _length_rows, _fitness
    if _compiled is None:
        import numba

        # numba resolves _scape_plot's calls at compile time, through this module's globals.
        _length_rows = numba.njit(cache=True, nogil=True, boundscheck=False)(_length_rows)
        _fitness = numba.njit(cache=True, nogil=True)(_fitness)
        _compiled = numba.njit(cache=True, nogil=True)(_scape_plot)
    return _compiled


def scape_plot(s: np.ndarray) -> tuple[np.ndarray, bool]:
    """(length-1, start) fitness matrix of a finite float64 square SSM, and False if some segment had an
    empty optimal path family (its value is then meaningless)."""
    if not AVAILABLE:
        raise RuntimeError("numba is not installed")
    s = np.ascontiguousarray(s, dtype=np.float64)
    pack = 1 << int(s.shape[0]).bit_length()  # > any row index
    plot, complete = _compile()(s, np.int64(pack))
    return plot, bool(complete)
