"""MOS with the CrowdMOS confidence interval, checked by hand and against a transcription of the reference.

Reference: Ribeiro et al., "CrowdMOS", ICASSP 2011, in the Python port stefantaubert/tts-mos-test-mturk
(``calculation/mos_variance.py``); the transcription below follows the port's definition with the column-wise
``vertical_var`` of Ribeiro's MATLAB code. Tolerance: 1e-12 absolute (same arithmetic, different order).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from xmodal.errors import EmptyInputError
from xmodal.metrics.mos import (
    RatingsError,
    mos_report,
    mos_variance,
    paired_comparisons,
    read_ratings,
    system_mos,
)

# ---- transcription of the reference definition -------------------------------------------------------------


def _ref_vertical_var(z):
    v = []
    for i in range(z.shape[1]):
        if np.sum(~np.isnan(z[:, i])) >= 2:
            v.append(np.nanvar(z[:, i]))
    return np.mean(v) if v else np.nan


def _ref_mos_variance(z):
    w = ~np.isnan(z)
    mi, nj, t = np.sum(w, 0), np.sum(w, 1), np.sum(w)
    v_su, v_wu, v_swu = _ref_vertical_var(z.T), _ref_vertical_var(z), np.nanvar(z)
    if not np.isnan(v_su) and not np.isnan(v_wu):
        v = np.maximum(np.linalg.solve([[1, 0, 1], [0, 1, 1], [1, 1, 1]], [v_su, v_wu, v_swu]), 0)
        return v[0] * np.sum(mi**2) / t**2 + v[1] * np.sum(nj**2) / t**2 + v[2] / t
    if np.isnan(v_su) and not np.isnan(v_wu):
        v = np.maximum(np.linalg.solve([[0, 1], [1, 1]], [v_wu, v_swu]), 0)
        return v[0] * np.sum(mi**2) / t**2 + v[1] / t
    if not np.isnan(v_su) and np.isnan(v_wu):
        v = np.maximum(np.linalg.solve([[0, 1], [1, 1]], [v_su, v_swu]), 0)
        return v[0] * np.sum(nj**2) / t**2 + v[1] / t
    return v_swu / t


def _ref_ci95(z):
    return -stats.t.isf(0.5 * (1 + 0.95), min(z.shape) - 1) * math.sqrt(_ref_mos_variance(z))  # matlab_tinv


# ---- a realistic listening test ----------------------------------------------------------------------------

SYSTEMS = {"ground_truth": 4.4, "tacotron": 3.9, "baseline": 3.1}


def _study(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """12 raters, 16 sentences, 3 systems; each rater hears 10 of the sentences per system (incomplete
    design), with rater leniency, sentence difficulty and rounding to the 1-5 ACR scale. Returns the CSV and
    the raters x items matrices per system."""
    rng = np.random.default_rng(2011)
    raters, items = [f"w{i:02d}" for i in range(12)], [f"s{j:02d}" for j in range(16)]
    lenient = rng.normal(0, 0.5, len(raters))
    hard = rng.normal(0, 0.4, len(items))
    rows, mats = ["worker,system,sentence_is_item_col,item,score,rater"], {}
    for system, mu in SYSTEMS.items():
        z = np.full((len(raters), len(items)), np.nan)
        for i, r in enumerate(raters):
            for j in rng.choice(len(items), 10, replace=False):
                s = int(np.clip(np.rint(mu + lenient[i] - hard[j] + rng.normal(0, 0.6)), 1, 5))
                z[i, j] = s
                rows.append(f"x,{system},y,{items[j]},{s},{r}")
        mats[system] = z
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    return path, mats


def test_mos_matches_reference_transcription(tmp_path):
    path, mats = _study(tmp_path)
    got = {s.system: s for s in system_mos(read_ratings(path))}
    assert set(got) == set(SYSTEMS)
    for system, z in mats.items():
        # Our matrix keeps only raters/items present for the system; here every one is present.
        assert got[system].n_raters == 12 and got[system].n_items == 16 and got[system].n_ratings == 120
        assert got[system].mos == pytest.approx(np.nanmean(z), abs=1e-12)
        assert mos_variance(z) == pytest.approx(_ref_mos_variance(z), abs=1e-12)
        assert got[system].ci95 == pytest.approx(_ref_ci95(z), abs=1e-12)
    # The rater and item effects make the CrowdMOS interval wider than the naive t * s / sqrt(n).
    z = mats["tacotron"]
    naive = stats.t.ppf(0.975, 119) * np.nanstd(z, ddof=1) / math.sqrt(120)
    assert got["tacotron"].ci95 > naive
    assert got["ground_truth"].mos > got["tacotron"].mos > got["baseline"].mos


def test_mos_variance_by_hand():
    """2 raters x 2 items, complete: Z = [[4, 2], [5, 3]].
    per-item variances (ddof 0): item0 {4,5} 0.25, item1 {2,3} 0.25 -> v_wu = 0.25
    per-rater variances: rater0 {4,2} 1.0, rater1 {5,3} 1.0 -> v_su = 1.0
    all ratings {4,2,5,3}: mean 3.5, variance 1.25 -> v_swu = 1.25
    v_s = v_swu - v_wu = 1.0, v_w = v_swu - v_su = 0.25, v_u = v_su + v_wu - v_swu = 0.0
    Var mu = 1.0 * (2^2 + 2^2) / 16 + 0.25 * (2^2 + 2^2) / 16 + 0 / 4 = 0.5 + 0.125 = 0.625
    CI95 = t_{0.975, 1} * sqrt(0.625) = 12.7062 * 0.7906 = 10.045"""
    z = np.array([[4.0, 2.0], [5.0, 3.0]])
    assert mos_variance(z) == pytest.approx(0.625, abs=1e-12)
    # MATLAB's nanvar (ddof 1): v_wu 0.5, v_su 2.0, v_swu 5/3 -> v_s 7/6, v_w -1/3 clipped to 0, v_u 5/6
    # -> Var mu = 7/6 * 8/16 + 0 + (5/6) / 4 = 19/24
    assert mos_variance(z, ddof=1) == pytest.approx(19 / 24, abs=1e-12)
    # No rater rated two items (a diagonal design): v_su is undefined, the 2x2 system is used.
    d = np.array([[4.0, np.nan], [np.nan, 2.0], [5.0, np.nan]])
    assert mos_variance(d) == pytest.approx(_ref_mos_variance(d), abs=1e-12)


def test_mos_variance_unbalanced_by_hand():
    """Incomplete designs, worked with fractions from the CrowdMOS model (Ribeiro et al. 2011, eq. 5-9):
    Var mu = v_s * sum_j m_j^2 / N^2 + v_w * sum_i n_i^2 / N^2 + v_u / N, with m_j ratings of item j, n_i ratings
    by rater i, v_su, v_wu the mean within-rater / within-item variances (lines with >= 2 ratings), v_swu the
    variance of all N ratings, and [v_s + v_u, v_w + v_u, v_s + v_w + v_u] = [v_su, v_wu, v_swu].

    (a) Z = [[5, 3, 4], [4, -, 2], [1, 3, -]] (raters x items), N = 7, m = (3, 2, 2), n = (3, 2, 2):
        items {5,4,1} 26/9, {3,3} 0, {4,2} 1 -> v_wu = 35/27; raters {5,3,4} 2/3, {4,2} 1, {1,3} 1 -> v_su = 8/9;
        all: mean 22/7, v_swu = 80/7 - (22/7)^2 = 76/49.
        v_s = 76/49 - 35/27 = 337/1323, v_w = 76/49 - 8/9 = 292/441, v_u = 8/9 + 35/27 - 76/49 = 839/1323;
        Var mu = (337/1323 + 292/441) * 17/49 + 839/1323 / 7 = 26494/64827.
    (b) Z = [[4, 2], [5, -], [3, 3]], N = 5, m = (3, 2), n = (2, 1, 2): v_wu = (2/3 + 1/4) / 2 = 11/24,
        v_su = (1 + 0) / 2 = 1/2 (rater 1 has one rating), v_swu = 26/25 -> v_s = 349/600, v_w = 27/50 and
        v_u = -49/600, clipped to 0 as CrowdMOS clips negative components: Var mu = 349/600 * 13/25 + 27/50 * 9/25.
    (c) Z = [[5, 1, -], [4, -, 2], [-, 3, 3], [2, 2, 4]], N = 9, m = (3, 3, 3), n = (2, 2, 2, 3): v_wu = 26/27,
        v_su = 53/36, v_swu = 116/81 -> v_s = 38/81, v_w = -13/324 -> 0, v_u = 325/324: Var mu = 38/81 * 27/81
        + 325/324 / 9 = 781/2916."""
    n = np.nan
    a = np.array([[5, 3, 4], [4, n, 2], [1, 3, n]])
    assert mos_variance(a) == pytest.approx(26494 / 64827, abs=1e-12)
    b = np.array([[4, 2], [5, n], [3, 3]])
    assert mos_variance(b) == pytest.approx(349 / 600 * 13 / 25 + 27 / 50 * 9 / 25, abs=1e-12)
    c = np.array([[5, 1, n], [4, n, 2], [n, 3, 3], [2, 2, 4]])
    assert mos_variance(c) == pytest.approx(781 / 2916, abs=1e-12)


def test_paired_comparisons(tmp_path):
    path, mats = _study(tmp_path)
    comps = {(c.system_a, c.system_b): c for c in paired_comparisons(read_ratings(path))}
    assert set(comps) == {
        ("baseline", "ground_truth"),
        ("baseline", "tacotron"),
        ("ground_truth", "tacotron"),
    }
    a, b = np.nanmean(mats["baseline"], axis=0), np.nanmean(mats["tacotron"], axis=0)  # per-item means
    c = comps[("baseline", "tacotron")]
    assert c.n_items == 16
    assert c.mean_difference == pytest.approx(np.mean(a - b), abs=1e-12)
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b)
    assert (c.t_statistic, c.t_pvalue) == pytest.approx((t.statistic, t.pvalue), abs=1e-12)
    assert (c.wilcoxon_statistic, c.wilcoxon_pvalue) == pytest.approx((w.statistic, w.pvalue), abs=1e-12)
    assert c.t_pvalue < 0.01  # 0.8 MOS apart over 16 items


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("rater,item,system,score\nr1,i1,A,4\nr1,i2,A,x\n", 3, "not a number"),
        ("rater,item,system,score\nr1,i1,A,4\nr2,i1,A,7\n", 3, "outside the rating scale"),
        ("rater,item,system,score\nr1,i1,A,4\n,i2,A,3\n", 3, "empty rater"),
        ("rater,item,system,score\nr1,i1,A,4\nr1,i1,A,5\n", 3, "again"),
        ("rater,item,system,score\nr1,i1,A,4\nr1,i2\n", 3, "fields"),
        ("rater,item,score\nr1,i1,4\n", 1, "system"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, body, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(RatingsError, match=message) as info:
        read_ratings(path)
    assert info.value.source == f"{path}:{line}"


def test_empty_and_missing(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("rater,item,system,score\n")
    with pytest.raises(EmptyInputError):
        read_ratings(empty)
    with pytest.raises(FileNotFoundError):
        read_ratings(tmp_path / "nope.csv")


def test_cli_eval_mos(tmp_path):
    from typer.testing import CliRunner

    from xmodal.cli import app

    path, mats = _study(tmp_path)
    res = CliRunner().invoke(app, ["eval", "mos", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == json.loads(json.dumps(mos_report(path)))
    by_name = {s["system"]: s for s in out["systems"]}
    assert by_name["baseline"]["ci95"] == pytest.approx(_ref_ci95(mats["baseline"]), abs=1e-12)
