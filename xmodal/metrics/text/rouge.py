"""ROUGE-L exactly as pycocoevalcap's ``rouge.py`` (Lin 2004, COCO variant).

Tokens come from ``caption.split(" ")`` (so an empty caption is one empty token, as in the reference); the
precision and the recall are each maximised over the references separately, and
``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2``; the corpus score is the mean over images.
The longest common subsequence uses the bit-parallel recurrence of Hyyro (2004): one bit-vector update per
reference token instead of a quadratic table, which gives the same integer length; candidates of up to 64
tokens use one uint64 per pair, all pairs updated together by numpy, longer ones Python integers.
"""

from __future__ import annotations

import numpy as np

BETA = 1.2


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(b)) - 1
    v = full
    for tok in a:
        m = masks.get(tok)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(b) - v.bit_count()


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (np.bitwise_count where numpy >= 2 has it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.int64)
    table = np.array([i.bit_count() for i in range(256)], dtype=np.int64)
    return table[x.view(np.uint8).reshape(len(x), 8)].sum(axis=1)


def _lcs_vectorised(c_tok: np.ndarray, c_len: np.ndarray, r_tok: np.ndarray, r_len: np.ndarray,
                    ref_img: np.ndarray) -> np.ndarray:
    """LCS length of every (reference, its image's candidate) pair, candidates of at most 64 tokens.

    Tokens are integer ids, concatenated (``c_tok``/``r_tok``) with per-sentence lengths; ``ref_img`` is the
    candidate of each reference. The same Hyyro recurrence as :func:`lcs_length`, on one uint64 bit vector per
    pair, all pairs advanced together one reference position at a time (a pair drops out when its reference
    ends).
    """
    n_refs = len(r_len)
    if n_refs == 0:
        return np.zeros(0, np.int64)
    vocab = int(max(c_tok.max(initial=0), r_tok.max(initial=0))) + 1
    # Bit mask of each (image, token): OR of 1 << position over the candidate's occurrences of the token.
    c_img = np.repeat(np.arange(len(c_len), dtype=np.int64), c_len)
    c_pos = np.arange(len(c_tok), dtype=np.int64) - np.repeat(np.cumsum(c_len) - c_len, c_len)
    c_key = c_img * vocab + c_tok
    order = np.argsort(c_key, kind="stable")
    c_key = c_key[order]
    bits = np.left_shift(np.uint64(1), c_pos[order].astype(np.uint64))
    starts = np.flatnonzero(np.concatenate([[True], c_key[1:] != c_key[:-1]]))
    keys, masks = c_key[starts], np.bitwise_or.reduceat(bits, starts)
    # Mask of each reference token (0 when the candidate lacks it).
    r_of_tok = np.repeat(np.arange(n_refs, dtype=np.int64), r_len)
    q = ref_img[r_of_tok] * vocab + r_tok
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    tok_mask = np.where(keys[pos] == q, masks[pos], np.uint64(0))
    # Lay the masks out column by column over the references sorted by decreasing length, so that the pairs
    # still running at position j are a prefix of that order.
    by_len = np.argsort(-r_len, kind="stable")
    rank = np.empty(n_refs, dtype=np.int64)
    rank[by_len] = np.arange(n_refs)
    active = np.bincount(r_len, minlength=int(r_len.max()) + 1)[::-1].cumsum()[::-1][1:]  # refs longer than j
    col_start = np.concatenate([[0], np.cumsum(active)[:-1]])
    r_pos = np.arange(len(r_tok), dtype=np.int64) - np.repeat(np.cumsum(r_len) - r_len, r_len)
    laid = np.empty(len(r_tok), dtype=np.uint64)
    laid[col_start[r_pos] + rank[r_of_tok]] = tok_mask
    n_bits = c_len[ref_img][by_len]
    full = np.where(n_bits >= 64, np.uint64(0xFFFFFFFFFFFFFFFF),
                    np.left_shift(np.uint64(1), np.minimum(n_bits, 63).astype(np.uint64)) - np.uint64(1))
    v = full.copy()
    with np.errstate(over="ignore"):
        for j, a in enumerate(active.tolist()):
            m = laid[col_start[j]: col_start[j] + a]
            vj = v[:a]
            u = vj & m
            v[:a] = ((vj + u) | (vj - u)) & full[:a]  # uint64 wrap-around drops the same carry as "& full"
    lcs = np.empty(n_refs, dtype=np.int64)
    lcs[by_len] = n_bits - _popcount(v)
    return lcs


def rouge_l_token_scores(cand_toks: list[list[str]], ref_toks: list[list[list[str]]], beta: float = BETA
                         ) -> np.ndarray:
    """Per-image ROUGE-L F-scores (images,) from token lists (each at least one token, as ``split(" ")`` gives)."""
    from itertools import chain

    from xmodal.metrics.text.ngrams import encode

    n_refs = np.fromiter(map(len, ref_toks), dtype=np.int64, count=len(cand_toks))
    ids, lengths, _ = encode(list(chain(cand_toks, chain.from_iterable(ref_toks))))
    return rouge_l_encoded(ids, lengths, n_refs, beta)


def rouge_l_encoded(ids: np.ndarray, lengths: np.ndarray, n_refs: np.ndarray, beta: float = BETA) -> np.ndarray:
    """Per-image ROUGE-L F-scores from token ids: sentences are the images' candidates, then their references.

    ``ids`` concatenates every sentence's token ids, ``lengths`` (sentences,) are at least 1, ``n_refs``
    (images,) counts each image's references.
    """
    m = len(n_refs)
    b2 = beta ** 2
    out = np.zeros(m)
    if m == 0:
        return out
    c_len, r_len = lengths[:m], lengths[m:]
    n_c = int(c_len.sum())
    ref_img = np.repeat(np.arange(m, dtype=np.int64), n_refs)
    short = c_len <= 64
    if short.all():
        c_tok, r_tok, rl, r_img, img_v = ids[:n_c], ids[n_c:], r_len, ref_img, np.arange(m)
    else:  # keep the images whose candidate fits in 64 bits, renumbered 0..k-1
        img_v = np.flatnonzero(short)
        c_tok = ids[:n_c][np.repeat(short, c_len)]
        ref_keep = short[ref_img]
        r_tok = ids[n_c:][np.repeat(ref_keep, r_len)]
        rl = r_len[ref_keep]
        r_img = np.repeat(np.arange(len(img_v), dtype=np.int64), n_refs[img_v])
    if len(img_v):
        lcs = _lcs_vectorised(c_tok, c_len[img_v], r_tok, rl, r_img).astype(np.float64)
        first = np.concatenate([[0], np.cumsum(n_refs[img_v])[:-1]])
        # Same float operations as the reference: lcs / len, the max over references, then F.
        p = np.maximum.reduceat(lcs / c_len[img_v][r_img].astype(np.float64), first)
        r = np.maximum.reduceat(lcs / rl.astype(np.float64), first)
        ok = (p != 0) & (r != 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = ((1 + b2) * p * r) / (r + b2 * p)
        out[img_v] = np.where(ok, f, 0.0)
    if not short.all():  # candidates longer than 64 tokens: Python big integers
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        ref_first = np.concatenate([[m], m + np.cumsum(n_refs)]).tolist()
        for i in np.flatnonzero(~short).tolist():
            refs = [ids[bounds[k]: bounds[k + 1]].tolist() for k in range(ref_first[i], ref_first[i + 1])]
            out[i] = _rouge_one(ids[bounds[i]: bounds[i + 1]].tolist(), refs, b2)
    return out


def _rouge_one(tc: list, refs: list[list], b2: float) -> float:
    """ROUGE-L F of one candidate against its references, with Python integers as bit vectors."""
    masks: dict[str, int] = {}
    for j, tok in enumerate(tc):
        masks[tok] = masks.get(tok, 0) | (1 << j)
    full = (1 << len(tc)) - 1
    prec_max = rec_max = 0.0
    for tr in refs:
        v = full
        for tok in tr:
            mk = masks.get(tok)
            if mk:
                u = v & mk
                v = ((v + u) | (v - u)) & full
        lcs = len(tc) - v.bit_count()
        prec_max = max(prec_max, lcs / float(len(tc)))
        rec_max = max(rec_max, lcs / float(len(tr)))
    if prec_max != 0 and rec_max != 0:
        return ((1 + b2) * prec_max * rec_max) / float(rec_max + b2 * prec_max)
    return 0.0


def rouge_l_scores(cands: list[str], refs: list[list[str]], beta: float = BETA) -> np.ndarray:
    """Per-image ROUGE-L F-scores (images,) of space-joined token strings (tokens: ``split(" ")``)."""
    return rouge_l_token_scores([c.split(" ") for c in cands], [[r.split(" ") for r in rs] for rs in refs], beta)
