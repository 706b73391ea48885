"""ROUGE-L exactly as pycocoevalcap's ``rouge.py`` (Lin 2004, COCO variant).

Tokens come from ``caption.split(" ")`` (so an empty caption is one empty token, as in the reference); the
precision and the recall are each maximised over the references separately, and
``F = (1 + b^2) P R / (R + b^2 P)`` with ``b = 1.2``; the corpus score is the mean over images.
The longest common subsequence uses the bit-parallel recurrence of Hyyro (2004): one big-integer update per
reference token instead of a quadratic table, which gives the same integer length.
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
    return len(b) - bin(v).count("1")


def rouge_l_scores(cands: list[str], refs: list[list[str]], beta: float = BETA) -> np.ndarray:
    """Per-image ROUGE-L F-scores (images,) of space-joined token strings."""
    out = np.empty(len(cands))
    b2 = beta ** 2
    for i, (cand, rs) in enumerate(zip(cands, refs)):
        tc = cand.split(" ")
        # LCS is symmetric, so the candidate's bit masks are built once and every reference is streamed.
        masks: dict[str, int] = {}
        for j, tok in enumerate(tc):
            masks[tok] = masks.get(tok, 0) | (1 << j)
        full = (1 << len(tc)) - 1
        prec_max = rec_max = 0.0
        for r in rs:
            tr = r.split(" ")
            v = full
            for tok in tr:
                m = masks.get(tok)
                if m:
                    u = v & m
                    v = ((v + u) | (v - u)) & full
            lcs = len(tc) - bin(v).count("1")
            prec_max = max(prec_max, lcs / float(len(tc)))
            rec_max = max(rec_max, lcs / float(len(tr)))
        if prec_max != 0 and rec_max != 0:
            out[i] = ((1 + b2) * prec_max * rec_max) / float(rec_max + b2 * prec_max)
        else:
            out[i] = 0.0
    return out
