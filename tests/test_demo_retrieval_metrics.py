"""Retrieval metrics against a direct transcription of CLIP4Clip's ``compute_metrics`` (ArrowLuo/CLIP4Clip,
metrics.py), plus the tie rule we document. Tolerance: exact (1e-12) everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.errors import MetricInputError, NonFiniteError, ShapeError
from xmodal.metrics.retrieval import random_baseline, retrieval_metrics, retrieval_ranks


def clip4clip_compute_metrics(x: np.ndarray) -> dict[str, float]:
    """CLIP4Clip metrics.py compute_metrics, transcribed (rows are queries, the diagonal the ground truth)."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)
    d = d[:, np.newaxis]
    ind = sx - d
    ind = np.where(ind == 0)
    ind = ind[1]
    return {
        "R1": float(np.sum(ind == 0)) * 100 / len(ind),
        "R5": float(np.sum(ind < 5)) * 100 / len(ind),
        "R10": float(np.sum(ind < 10)) * 100 / len(ind),
        "MR": np.median(ind) + 1,
        "MeanR": np.mean(ind) + 1,
    }


def pessimistic_rank_by_sorting(row: np.ndarray, i: int) -> int:
    """The definition spelled out: sort descending, every tie of the ground truth placed before it."""
    order = sorted(range(len(row)), key=lambda j: (-row[j], j == i))  # among equals the gt sorts last
    return order.index(i)


@pytest.mark.parametrize("n, seed", [(7, 0), (50, 1), (301, 2)])
def test_matches_clip4clip_without_ties(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 16))
    sim = emb @ (emb + rng.normal(scale=2.0, size=(n, 16))).T  # correlated: ranks spread over the range
    ref = clip4clip_compute_metrics(sim)
    for ties in ("pessimistic", "optimistic"):
        ours = retrieval_metrics(sim, ties=ties)
        assert ours["R@1"] == pytest.approx(ref["R1"], abs=1e-12)
        assert ours["R@5"] == pytest.approx(ref["R5"], abs=1e-12)
        assert ours["R@10"] == pytest.approx(ref["R10"], abs=1e-12)
        assert ours["MedR"] == pytest.approx(ref["MR"], abs=1e-12)
        assert ours["MeanR"] == pytest.approx(ref["MeanR"], abs=1e-12)


def test_even_count_median_is_numpy_mean_of_middle_values() -> None:
    # ranks 0, 1, 2, 3 (0-based) -> np.median 1.5 -> MedR 2.5 (torch.median would give the lower value, 2)
    sim = np.array([[9.0, 1, 1, 1], [9, 5, 1, 1], [9, 8, 5, 1], [9, 8, 7, 5]])
    assert retrieval_ranks(sim).tolist() == [0, 1, 2, 3]
    assert retrieval_metrics(sim)["MedR"] == 2.5


def test_ties_pessimistic_and_optimistic() -> None:
    rng = np.random.default_rng(3)
    sim = rng.integers(0, 4, size=(40, 40)).astype(float)  # many exact ties
    pess = retrieval_ranks(sim, "pessimistic")
    opt = retrieval_ranks(sim, "optimistic")
    for i in range(40):
        assert pess[i] == pessimistic_rank_by_sorting(sim[i], i)
        # optimistic = the first tied position CLIP4Clip's np.where finds
        first = int(np.where(np.sort(-sim[i]) == -sim[i, i])[0][0])
        assert opt[i] == first
    assert (pess >= opt).all() and (pess > opt).any()
    # CLIP4Clip emits one entry per tied position, so its R@1 over a constant matrix is 1/n, ours is 0.
    const = np.ones((5, 5))
    assert clip4clip_compute_metrics(const)["R1"] == pytest.approx(20.0)
    assert retrieval_metrics(const)["R@1"] == 0.0
    assert retrieval_metrics(const)["MedR"] == 5.0
    assert retrieval_metrics(const, ties="optimistic")["R@1"] == 100.0


def test_torch_input_and_errors() -> None:
    sim = torch.eye(4)
    assert retrieval_metrics(sim)["R@1"] == 100.0
    with pytest.raises(ShapeError):
        retrieval_metrics(np.zeros((3, 4)))
    with pytest.raises(NonFiniteError):
        retrieval_metrics(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(MetricInputError):
        retrieval_metrics(np.zeros((0, 0)))


def test_random_baseline_is_chance() -> None:
    n = 200
    base = random_baseline(n, trials=30)
    # expected R@K = 100 K / n, MedR about (n + 1) / 2; 30 draws of 200 queries keep the mean within these bounds
    assert base["R@1"] == pytest.approx(100 * 1 / n, abs=0.5)
    assert base["R@10"] == pytest.approx(100 * 10 / n, abs=1.5)
    assert base["MedR"] == pytest.approx((n + 1) / 2, rel=0.1)
