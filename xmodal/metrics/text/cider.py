"""CIDEr-D exactly as pycocoevalcap's ``cider_scorer.py`` (Vedantam et al. 2015).

Kept from the reference: TF-IDF vectors of 1..4-grams with ``idf = log(#images) - log(max(1, df))``, where
``df`` counts the images whose REFERENCES contain the gram (so the score depends on the evaluated corpus, and a
single image scores 0); clipped similarity ``sum min(h, r) * r / (|h| |r|)``; the Gaussian length penalty
``exp(-delta^2 / (2 sigma^2))`` with sigma 6, where the reference's "length" is the number of BIGRAMS (its
``n == 1`` test on a zero-based order), kept here for equality; mean over orders, mean over references, x10.
Computed with numpy group operations over all (image, gram) pairs at once instead of per-image dictionaries.
"""

from __future__ import annotations

import numpy as np

from xmodal.metrics.text.ngrams import count_ngrams, unique


def cider_d_scores(cands: list[list[str]], refs: list[list[list[str]]], n: int = 4,
                   sigma: float = 6.0, counts: tuple | None = None) -> np.ndarray:
    """Per-image CIDEr-D (images,) from token lists; the corpus score is their mean."""
    m = len(cands)
    n_refs = np.fromiter((len(r) for r in refs), dtype=np.int64, count=m)
    flat_refs = [r for rs in refs for r in rs]
    n_sent = m + len(flat_refs)
    _, orders = counts if counts is not None else count_ngrams(cands + flat_refs, n)
    image_of = np.concatenate([np.arange(m, dtype=np.int64), np.repeat(np.arange(m, dtype=np.int64), n_refs)])
    log_n_images = np.log(float(m))
    val = np.zeros((len(flat_refs), n))  # clipped dot product of each reference with its candidate, per order
    norm = np.zeros((n_sent, n))
    bigrams = np.zeros(n_sent)
    for k, oc in enumerate(orders):
        is_ref = oc.sentence >= m
        # Document frequency: number of images whose references contain the gram.
        img_gram = unique(image_of[oc.sentence[is_ref]] * oc.n_grams + oc.gram[is_ref])
        df = np.bincount(img_gram % oc.n_grams, minlength=oc.n_grams).astype(np.float64)
        w = oc.count * (log_n_images - np.log(np.maximum(1.0, df[oc.gram])))
        norm[:, k] = np.bincount(oc.sentence, weights=w * w, minlength=n_sent)
        if k == 1:
            bigrams = np.bincount(oc.sentence, weights=oc.count, minlength=n_sent).astype(np.float64)
        # Candidate weight of the same (image, gram) for each reference entry.
        c_key = oc.sentence[~is_ref] * oc.n_grams + oc.gram[~is_ref]  # sorted: entries are sorted by sentence
        c_w = w[~is_ref]
        r_key = image_of[oc.sentence[is_ref]] * oc.n_grams + oc.gram[is_ref]
        pos = np.searchsorted(c_key, r_key)
        pos_ok = np.minimum(pos, max(len(c_key) - 1, 0))
        found = (pos < len(c_key)) & (c_key[pos_ok] == r_key) if len(c_key) else np.zeros(len(r_key), bool)
        wh = np.where(found, c_w[pos_ok] if len(c_key) else 0.0, 0.0)
        wr = w[is_ref]
        val[:, k] = np.bincount(oc.sentence[is_ref] - m, weights=np.minimum(wh, wr) * wr,
                                minlength=len(flat_refs))
    norm = np.sqrt(norm)
    ref_img = image_of[m:]
    nh, nr = norm[ref_img], norm[m:]
    ok = (nh != 0) & (nr != 0)
    val = np.where(ok, val / np.where(ok, nh * nr, 1.0), val)
    delta = bigrams[ref_img] - bigrams[m:]
    val *= (np.e ** (-(delta ** 2) / (2 * sigma ** 2)))[:, None]
    first = np.concatenate([[0], np.cumsum(n_refs)[:-1]])
    per_image = np.add.reduceat(val, first, axis=0) if m else np.zeros((0, n))  # (images, n)
    return per_image.mean(axis=1) / n_refs * 10.0
