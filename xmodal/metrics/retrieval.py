"""Cross-modal retrieval metrics: R@1, R@5, R@10, median rank and mean rank.

Reference: CLIP4Clip ``metrics.py compute_metrics`` (ArrowLuo/CLIP4Clip). For a square similarity matrix whose
row ``i`` is a query and whose column ``i`` is its one ground-truth item, the rank of the ground truth counted
from 0 is ``r``; then ``R@K = 100 * mean(r < K)``, ``MedianR = np.median(r) + 1`` (numpy's median: the mean of the
two middle values for an even count) and ``MeanR = mean(r) + 1``.

Ties. CLIP4Clip finds ``r`` with ``np.where(sorted_row == gt_score)``, which returns *every* tied position, so a
row with ties contributes several ranks and the best of them counts as a hit. We instead give each query exactly
one rank, and resolve ties pessimistically by default: ``r = #{j != i : s_ij >= s_ii}`` (every item scored as
high as the ground truth is ranked ahead of it), so a constant model scores the worst rank, not the best.
``ties="optimistic"`` gives ``r = #{j : s_ij > s_ii}``, which equals CLIP4Clip's first tied position. Without
ties both equal CLIP4Clip exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from xmodal.errors import MetricInputError, NonFiniteError, ShapeError

Ties = Literal["pessimistic", "optimistic"]


def _as_numpy(sim: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().to("cpu", torch.float64).numpy()
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ShapeError(f"expected a square (queries, items) similarity matrix, got shape {sim.shape}", name)
    if sim.shape[0] == 0:
        raise MetricInputError("the similarity matrix is empty", name)
    if not np.isfinite(sim).all():
        raise NonFiniteError("the similarity matrix holds NaN or infinity", name)
    return sim


def retrieval_ranks(sim: np.ndarray | torch.Tensor, ties: Ties = "pessimistic") -> np.ndarray:
    """0-based rank of each query's ground truth (the diagonal) among all items, higher score first.

    ``sim``: (queries, items) similarities, ground truth on the diagonal. See the module docstring for ties.
    """
    s = _as_numpy(sim, "sim")
    gt = np.diag(s)[:, None]  # (n, 1)
    if ties == "pessimistic":
        ahead = (s >= gt).sum(axis=1) - 1  # minus the ground truth itself
    elif ties == "optimistic":
        ahead = (s > gt).sum(axis=1)
    else:
        raise MetricInputError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}", "ties")
    return ahead.astype(np.int64)


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """R@K in percent, MedianR and MeanR (1-based) from 0-based ranks, as CLIP4Clip computes them."""
    r = np.asarray(ranks)
    if r.size == 0:
        raise MetricInputError("no ranks to summarise", "ranks")
    out = {f"R@{k}": float(100.0 * np.mean(r < k)) for k in ks}
    out["MedR"] = float(np.median(r) + 1)
    out["MeanR"] = float(np.mean(r) + 1)
    return out


def retrieval_metrics(
    sim: np.ndarray | torch.Tensor, ties: Ties = "pessimistic", ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """R@1/5/10 (percent), MedR and MeanR for a (queries, items) similarity matrix with ground truth on the
    diagonal. Follows CLIP4Clip ``compute_metrics``; ties are pessimistic unless asked otherwise."""
    return metrics_from_ranks(retrieval_ranks(sim, ties), ks)


def cosine_similarity_matrix(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(n, d) x (m, d) -> (n, m) cosine similarities."""
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ShapeError(
            f"expected (n, d) and (m, d) embeddings, got {tuple(queries.shape)} and {tuple(items.shape)}",
            "embeddings",
        )
    q = torch.nn.functional.normalize(queries.float(), dim=-1)
    k = torch.nn.functional.normalize(items.float(), dim=-1)
    return q @ k.T


def random_baseline(
    n: int, dim: int = 256, seed: int = 0, ties: Ties = "pessimistic", trials: int = 20
) -> dict[str, float]:
    """Retrieval metrics of random Gaussian embeddings for ``n`` queries and ``n`` items, averaged over
    ``trials`` draws: the chance level a trained model must beat. (Expected R@K = 100*K/n, MedR ~ (n+1)/2.)"""
    if n < 1:
        raise MetricInputError(f"the baseline needs at least one item, got n={n}", "n")
    gen = torch.Generator().manual_seed(seed)
    runs = []
    for _ in range(trials):
        q = torch.randn(n, dim, generator=gen)
        k = torch.randn(n, dim, generator=gen)
        runs.append(retrieval_metrics(cosine_similarity_matrix(q, k), ties))
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
