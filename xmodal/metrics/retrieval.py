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


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10),
                       floor_median: bool = False) -> dict[str, float]:
    """R@K in percent, MedianR and MeanR (1-based) from 0-based ranks, as CLIP4Clip computes them;
    ``floor_median`` rounds the median down first, as VSE++ ``evaluation.py`` (``np.floor(np.median(r)) + 1``)."""
    r = np.asarray(ranks)
    if r.size == 0:
        raise MetricInputError("no ranks to summarise", "ranks")
    out = {f"R@{k}": float(100.0 * np.mean(r < k)) for k in ks}
    median = np.median(r)
    out["MedR"] = float((np.floor(median) if floor_median else median) + 1)
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


# ---------------------------------------------------------------------------------------------------------------
# Benchmark protocols with several ground-truth items per query (COCO / Flickr30k any-of-five, Clotho, AudioCaps)

_CHUNK_ELEMENTS = 1 << 22  # rows scored at once (32 MB in float64): a 25,000 x 5,000 COCO matrix would need 1 GB


def _matrix(sim: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu().numpy()
    sim = np.asarray(sim)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ShapeError(f"expected a non-empty (queries, items) similarity matrix, got shape {sim.shape}", name)
    if not np.issubdtype(sim.dtype, np.number):
        raise MetricInputError(f"similarities must be numbers, got dtype {sim.dtype}", name)
    return sim


def ranks_any_positive(sim: np.ndarray | torch.Tensor, positives: list[list[int]],
                       ties: Ties = "pessimistic") -> np.ndarray:
    """0-based rank of each query's best-placed ground-truth item (VSE++ ``i2t``: the minimum rank over the
    image's captions). ``sim``: (queries, items); ``positives[i]``: the items that are correct for query i.

    With ``best`` the highest score of a correct item: ``pessimistic`` counts the wrong items scored >= best,
    ``optimistic`` (the strict ``#(s > best)`` rule: CLIP4Clip's first tied position) those scored > best."""
    s = _matrix(sim, "sim")
    if len(positives) != s.shape[0]:
        raise ShapeError(f"{len(positives)} queries have ground truth but the matrix has {s.shape[0]} rows", "sim")
    if ties not in ("pessimistic", "optimistic"):
        raise MetricInputError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}", "ties")
    out = np.empty(s.shape[0], dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // s.shape[1])
    for lo in range(0, s.shape[0], step):
        block = s[lo: lo + step].astype(np.float64)  # (rows, items)
        if not np.isfinite(block).all():
            raise NonFiniteError(f"the similarity matrix holds NaN or infinity (rows {lo}..)", "sim")
        correct = np.zeros(block.shape, dtype=bool)
        for r, items in enumerate(positives[lo: lo + step]):
            if not items or min(items) < 0 or max(items) >= s.shape[1]:
                raise MetricInputError(f"query {lo + r}: ground-truth items {items} are not columns of the "
                                       f"{s.shape[1]}-item gallery", "positives")
            correct[r, items] = True
        best = np.where(correct, block, -np.inf).max(axis=1, keepdims=True)
        if ties == "pessimistic":
            out[lo: lo + len(block)] = ((block >= best) & ~correct).sum(axis=1)
        else:
            out[lo: lo + len(block)] = (block > best).sum(axis=1)
    return out


def text_item_retrieval(sim: np.ndarray | torch.Tensor, caption_item: list[int], directions: tuple[str, str],
                        ties: Ties = "pessimistic", ks: tuple[int, ...] = (1, 5, 10),
                        floor_median: bool = False) -> dict[str, float]:
    """Both directions of text-item retrieval from one (captions, items) similarity matrix.

    ``caption_item[c]`` is the item that caption c describes. Text-to-item ranks each caption's one item;
    item-to-text ranks the best of the item's captions (any-of-five). ``directions`` names the two, e.g.
    ``("t2i", "i2t")``; keys are ``"<direction>_R@1"``, ..., ``"<direction>_MedR"``, ``"<direction>_MeanR"``.
    ``floor_median`` as in :func:`metrics_from_ranks` (VSE++ and the audio-text code derived from it)."""
    s = _matrix(sim, "sim")
    if len(caption_item) != s.shape[0]:
        raise ShapeError(f"{len(caption_item)} captions but the matrix has {s.shape[0]} rows", "sim")
    captions_of: list[list[int]] = [[] for _ in range(s.shape[1])]
    for c, item in enumerate(caption_item):
        if not 0 <= item < s.shape[1]:
            raise MetricInputError(f"caption {c} describes item {item}, not one of {s.shape[1]}", "caption_item")
        captions_of[item].append(c)
    t2x = metrics_from_ranks(ranks_any_positive(s, [[i] for i in caption_item], ties), ks, floor_median)
    x2t = metrics_from_ranks(ranks_any_positive(s.T, captions_of, ties), ks, floor_median)
    out = {f"{directions[0]}_{k}": v for k, v in t2x.items()}
    out.update({f"{directions[1]}_{k}": v for k, v in x2t.items()})
    return out


def fold_average(results: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over folds, as VSE++ ``evalrank(fold5=True)`` averages R@K, MedR and MeanR."""
    if not results:
        raise MetricInputError("no folds", "folds")
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}
