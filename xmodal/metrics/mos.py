"""Mean opinion score with the CrowdMOS 95% confidence interval (Ribeiro et al., ICASSP 2011) and paired
comparisons between systems.

Ratings are rows (rater, item, system, score). For each system the scores form a raters x items matrix Z
(NaN where a rater did not rate an item) under the model Z_ij = mu + w_i + s_j + u_ij with rater, item and
residual variances v_w, v_s, v_u. Following the Python port of Ribeiro's code
(stefantaubert/tts-mos-test-mturk, ``mos_variance``):

    v_wu  = mean over items with >= 2 ratings of the variance of that item's ratings       (= v_w + v_u)
    v_su  = mean over raters with >= 2 ratings of the variance of that rater's ratings     (= v_s + v_u)
    v_swu = variance of all ratings                                                        (= v_s + v_w + v_u)
    solve [[1,0,1],[0,1,1],[1,1,1]] (v_s, v_w, v_u) = (v_su, v_wu, v_swu), clip each at 0
    Var(mu) = v_s * sum_j M_j^2 / T^2 + v_w * sum_i N_i^2 / T^2 + v_u / T
    CI95 = t_{0.975, min(raters, items) - 1} * sqrt(Var(mu))

with M_j the number of ratings of item j, N_i those of rater i and T all ratings. Variances use ddof=0 as the
port's ``np.nanvar``; Ribeiro's MATLAB ``nanvar`` normalises by n-1, available as ``ddof=1``. When no item
(or no rater) has two ratings, the port's reduced 2x2 systems are used.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

from xmodal.errors import CorruptFileError, DataError, EmptyInputError, MissingFileError

COLUMNS = ("rater", "item", "system", "score")


class RatingsError(DataError):
    """A ratings table is malformed. ``source`` is ``file:line``."""


@dataclass(frozen=True)
class Rating:
    rater: str
    item: str
    system: str
    score: float


@dataclass(frozen=True)
class SystemMOS:
    system: str
    mos: float
    ci95: float
    n_ratings: int
    n_raters: int
    n_items: int


@dataclass(frozen=True)
class PairedComparison:
    system_a: str
    system_b: str
    n_items: int
    mean_difference: float  # mean over shared items of (per-item mean of a) - (per-item mean of b)
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float


def read_ratings(path: str | Path, scale: tuple[float, float] | None = (1, 5)) -> list[Rating]:
    """Read a CSV whose header names the columns rater, item, system, score (any order; others ignored).

    Raises RatingsError naming ``file:line`` for a missing column, an empty field, a non-numeric or
    out-of-``scale`` score, or the same (rater, item, system) rated twice."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("ratings file not found", path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"not UTF-8 text ({exc}); save the CSV as UTF-8", path) from exc
    with io.StringIO(text, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise EmptyInputError("is empty; expected a header rater,item,system,score", path)
        names = [h.strip().lower() for h in header]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise RatingsError(
                f"header {header} lacks column(s) {missing}; expected {list(COLUMNS)}", f"{path}:1"
            )
        index = {c: names.index(c) for c in COLUMNS}
        ratings: list[Rating] = []
        seen: dict[tuple[str, str, str], int] = {}
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}:{line_no}"
            if len(row) < len(names):
                raise RatingsError(f"has {len(row)} fields, the header has {len(names)}", where)
            fields = {c: row[i].strip() for c, i in index.items()}
            for c in ("rater", "item", "system"):
                if not fields[c]:
                    raise RatingsError(f"empty {c}", where)
            try:
                score = float(fields["score"])
            except ValueError:
                raise RatingsError(f"score {fields['score']!r} is not a number", where) from None
            if not math.isfinite(score) or (scale is not None and not scale[0] <= score <= scale[1]):
                raise RatingsError(f"score {score} is outside the rating scale {scale}", where)
            key = (fields["rater"], fields["item"], fields["system"])
            if key in seen:
                raise RatingsError(
                    f"rater {key[0]!r} rated item {key[1]!r} of system {key[2]!r} again "
                    f"(first on line {seen[key]})",
                    where,
                )
            seen[key] = line_no
            ratings.append(Rating(*key, score))
    if not ratings:
        raise EmptyInputError("holds a header but no ratings", path)
    return ratings


def _matrix(ratings: list[Rating], system: str) -> np.ndarray:
    """Raters x items score matrix of one system, NaN where a rater did not rate an item."""
    rows = [r for r in ratings if r.system == system]
    raters = sorted({r.rater for r in rows})
    items = sorted({r.item for r in rows})
    ri, ii = {k: i for i, k in enumerate(raters)}, {k: i for i, k in enumerate(items)}
    z = np.full((len(raters), len(items)), np.nan)
    for r in rows:
        z[ri[r.rater], ii[r.item]] = r.score
    return z


def _mean_line_variance(z: np.ndarray, ddof: int) -> float:
    """Mean over columns holding >= 2 ratings of their variance; NaN when there is none."""
    counts = np.sum(~np.isnan(z), axis=0)
    cols = z[:, counts >= 2]
    if cols.shape[1] == 0:
        return math.nan
    return float(np.mean(np.nanvar(cols, axis=0, ddof=ddof)))


def mos_variance(z: np.ndarray, ddof: int = 0) -> float:
    """Var(mu) of the CrowdMOS model for a raters x items matrix ``z`` with NaN for missing ratings."""
    w = ~np.isnan(z)
    m_items = w.sum(axis=0)  # ratings per item
    n_raters = w.sum(axis=1)  # ratings per rater
    total = int(w.sum())
    v_wu = _mean_line_variance(z, ddof)  # within an item, ratings differ by rater and residual
    v_su = _mean_line_variance(z.T, ddof)  # within a rater, ratings differ by item and residual
    v_swu = float(np.nanvar(z, ddof=ddof)) if total > ddof else math.nan
    item_term = float(np.sum(m_items.astype(float) ** 2)) / total**2
    rater_term = float(np.sum(n_raters.astype(float) ** 2)) / total**2
    if not math.isnan(v_su) and not math.isnan(v_wu):
        v_s, v_w, v_u = np.maximum(np.linalg.solve([[1, 0, 1], [0, 1, 1], [1, 1, 1]], [v_su, v_wu, v_swu]), 0)
        return float(v_s * item_term + v_w * rater_term + v_u / total)
    if not math.isnan(v_wu):  # no rater rated two items: item variance and (rater + residual)
        v_s, v_wu_ = np.maximum(np.linalg.solve([[0, 1], [1, 1]], [v_wu, v_swu]), 0)
        return float(v_s * item_term + v_wu_ / total)
    if not math.isnan(v_su):  # no item rated twice: rater variance and (item + residual)
        v_w, v_su_ = np.maximum(np.linalg.solve([[0, 1], [1, 1]], [v_su, v_swu]), 0)
        return float(v_w * rater_term + v_su_ / total)
    return v_swu / total


def system_mos(ratings: list[Rating], ddof: int = 0) -> list[SystemMOS]:
    """MOS and CrowdMOS 95% CI half-width for every system, in name order."""
    from scipy.stats import t as student_t

    if not ratings:
        raise EmptyInputError("no ratings given", "ratings")
    out = []
    for system in sorted({r.system for r in ratings}):
        z = _matrix(ratings, system)
        df = min(z.shape) - 1
        ci = float(student_t.ppf(0.975, df) * math.sqrt(mos_variance(z, ddof))) if df >= 1 else math.nan
        out.append(
            SystemMOS(system, float(np.nanmean(z)), ci, int(np.sum(~np.isnan(z))), z.shape[0], z.shape[1])
        )
    return out


def item_means(ratings: list[Rating], system: str) -> dict[str, float]:
    """Mean score of each item of one system over its raters."""
    sums: dict[str, list[float]] = {}
    for r in ratings:
        if r.system == system:
            sums.setdefault(r.item, []).append(r.score)
    return {item: float(np.mean(v)) for item, v in sums.items()}


def paired_comparisons(ratings: list[Rating]) -> list[PairedComparison]:
    """Paired t-test and Wilcoxon signed-rank test on per-item means, for every pair of systems, over the
    items both systems were rated on (use the same items across systems). NaN p-values when fewer than
    two shared items or when all differences are zero."""
    from scipy.stats import ttest_rel, wilcoxon

    systems = sorted({r.system for r in ratings})
    means = {s: item_means(ratings, s) for s in systems}
    out = []
    for a, b in combinations(systems, 2):
        shared = sorted(set(means[a]) & set(means[b]))
        xa = np.array([means[a][i] for i in shared])
        xb = np.array([means[b][i] for i in shared])
        diff = xa - xb
        t_stat = t_p = w_stat = w_p = math.nan
        if len(shared) >= 2 and np.any(diff != 0):
            t_stat, t_p = (float(v) for v in ttest_rel(xa, xb))
            w_stat, w_p = (float(v) for v in wilcoxon(xa, xb))
        out.append(
            PairedComparison(
                a, b, len(shared), float(np.mean(diff)) if len(shared) else math.nan, t_stat, t_p, w_stat, w_p
            )
        )
    return out


def mos_report(path: str | Path, scale: tuple[float, float] | None = (1, 5), ddof: int = 0) -> dict:
    """Read a ratings CSV and return a JSON-ready dict: per-system MOS with CI, and paired comparisons."""
    ratings = read_ratings(path, scale)
    return {
        "n_ratings": len(ratings),
        "systems": [asdict(s) for s in system_mos(ratings, ddof)],
        "paired": [asdict(p) for p in paired_comparisons(ratings)],
        "ci_method": "CrowdMOS (Ribeiro et al. 2011), t_{0.975, min(raters, items)-1} * sqrt(Var mu)",
    }
