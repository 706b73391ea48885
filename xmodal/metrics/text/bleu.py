"""Corpus BLEU-1..4 exactly as pycocoevalcap's ``bleu_scorer.py`` (Papineni et al. 2002, COCO variant).

Reference behaviour kept: whitespace tokens (``str.split()``), n-gram counts clipped by the maximum count in
any one reference, the 'closest' reference length (ties go to the shorter reference), corpus-level brevity
penalty ``exp(1 - r/c)`` when ``c < r``, and precisions ``(correct + 1e-15) / (guess + 1e-9)``. Per-image
scores use the same formula sentence by sentence, as pycocoevalcap's second return value does.
"""

from __future__ import annotations

import math

import numpy as np

from xmodal.metrics.text.ngrams import count_ngrams, unique_first

_TINY = 1e-15
_SMALL = 1e-9


def bleu_stats(cands: list[list[str]], refs: list[list[list[str]]], n: int = 4,
               counts: tuple | None = None) -> dict[str, np.ndarray]:
    """Per-image statistics: ``testlen``, closest ``reflen`` and ``correct``/``guess`` of shape (images, n)."""
    m = len(cands)
    n_refs = np.fromiter((len(r) for r in refs), dtype=np.int64, count=m)
    flat_refs = [r for rs in refs for r in rs]
    # ``counts``: count_ngrams(cands + flattened refs), shared with CIDEr-D by the caller.
    lengths, orders = counts if counts is not None else count_ngrams(cands + flat_refs, n)
    testlen = lengths[:m]
    ref_image = np.repeat(np.arange(m, dtype=np.int64), n_refs)  # image of each reference
    ref_len = lengths[m:]
    # Closest reference length, ties to the shorter: minimise (|l - c|, l) lexicographically.
    key = np.abs(ref_len - testlen[ref_image]) * (int(ref_len.max(initial=0)) + 1) + ref_len
    first = np.concatenate([[0], np.cumsum(n_refs)[:-1]])
    best = np.minimum.reduceat(key, first) if m else key
    reflen = best % (int(ref_len.max(initial=0)) + 1)
    correct = np.zeros((m, n), dtype=np.int64)
    for k, oc in enumerate(orders):
        is_cand = oc.sentence < m
        # Maximum count of each gram over the references of an image.
        r_img = ref_image[oc.sentence[~is_cand] - m]
        r_key = r_img * oc.n_grams + oc.gram[~is_cand]
        order = np.argsort(r_key, kind="stable")
        r_key, r_cnt = r_key[order], oc.count[~is_cand][order]
        uniq, start = unique_first(r_key)
        r_max = np.maximum.reduceat(r_cnt, start) if len(start) else r_cnt
        c_key = oc.sentence[is_cand] * oc.n_grams + oc.gram[is_cand]
        pos = np.searchsorted(uniq, c_key)
        pos_ok = np.minimum(pos, max(len(uniq) - 1, 0))
        found = (pos < len(uniq)) & (uniq[pos_ok] == c_key) if len(uniq) else np.zeros(len(c_key), bool)
        clipped = np.where(found, np.minimum(oc.count[is_cand], r_max[pos_ok] if len(uniq) else 0), 0)
        correct[:, k] = np.bincount(oc.sentence[is_cand], weights=clipped, minlength=m).astype(np.int64)
    guess = np.maximum(0, testlen[:, None] - np.arange(n)[None, :])
    return {"testlen": testlen, "reflen": reflen, "correct": correct, "guess": guess}


def bleu_from_stats(stats: dict[str, np.ndarray], n: int = 4) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n and per-image BLEU (images, n), with pycocoevalcap's smoothing constants."""
    correct, guess = stats["correct"], stats["guess"]
    testlen, reflen = stats["testlen"], stats["reflen"]
    # Corpus score: same Python float operations in the same order as the reference.
    tot_test, tot_ref = float(testlen.sum()), float(reflen.sum())
    bleus, b = [], 1.0
    for k in range(n):
        b *= float(int(correct[:, k].sum()) + _TINY) / (int(guess[:, k].sum()) + _SMALL)
        bleus.append(b ** (1.0 / (k + 1)))
    ratio = (tot_test + _TINY) / (tot_ref + _SMALL)
    if ratio < 1:
        bleus = [x * math.exp(1 - 1 / ratio) for x in bleus]
    # Per image, vectorised over images with the same operation order.
    per = np.empty((len(testlen), n))
    b_img = np.ones(len(testlen))
    for k in range(n):
        b_img = b_img * ((correct[:, k] + _TINY) / (guess[:, k] + _SMALL))
        per[:, k] = b_img ** (1.0 / (k + 1))
    r_img = (testlen + _TINY) / (reflen + _SMALL)
    with np.errstate(over="ignore", divide="ignore"):
        bp = np.where(r_img < 1, np.exp(1 - 1 / r_img), 1.0)
    per *= bp[:, None]
    return bleus, per


def bleu(cands: list[list[str]], refs: list[list[list[str]]], n: int = 4, counts: tuple | None = None
         ) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n and per-image scores from token lists (pycocoevalcap ``Bleu(n).compute_score``)."""
    return bleu_from_stats(bleu_stats(cands, refs, n, counts), n)
