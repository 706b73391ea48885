"""Vectorised n-gram counting shared by BLEU and CIDEr-D.

Every sentence's n-grams (orders 1..4) become integer ids, and per-sentence counts become flat arrays
``(sentence, gram, count)`` sorted by sentence then gram, so that clipping, document frequencies and
dot products are numpy group operations instead of Python dictionaries per sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _sorted_runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` sorted (stable), the order that sorts it, and the start of each run of equal values."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.concatenate([[True], xs[1:] != xs[:-1]])) if len(xs) else np.zeros(0, np.int64)
    return xs, order, starts


# np.unique on int64 takes a hash-table path in numpy >= 2.3 that is ~100x slower than sorting on millions of
# n-gram keys; these sort-based versions return the same (sorted) values.
def unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-D integer array."""
    xs = np.sort(x)
    return xs[np.concatenate([[True], xs[1:] != xs[:-1]])] if len(xs) else xs


def unique_first(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the index of the first occurrence of each (np.unique(return_index=True))."""
    xs, order, starts = _sorted_runs(x)
    return xs[starts], order[starts]


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each element, the index of its value (np.unique(return_inverse=True))."""
    xs, order, starts = _sorted_runs(x)
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(np.concatenate([[False], xs[1:] != xs[:-1]])) if len(xs) else order
    return xs[starts], inverse


def unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (np.unique(return_counts=True))."""
    xs, _, starts = _sorted_runs(x)
    return xs[starts], np.diff(np.append(starts, len(xs)))


@dataclass
class NgramCounts:
    """Counts of one n-gram order: parallel arrays, one entry per distinct (sentence, gram)."""

    sentence: np.ndarray  # (entries,) int64 sentence index
    gram: np.ndarray  # (entries,) int64 gram id, unique within the order
    count: np.ndarray  # (entries,) int64 occurrences of the gram in the sentence
    n_grams: int  # number of distinct grams of this order


def count_ngrams(sentences: list[list[str]], max_n: int = 4) -> tuple[np.ndarray, list[NgramCounts]]:
    """Lengths ``(sentences,)`` and, per order 1..max_n, the n-gram counts of every sentence."""
    from itertools import chain

    flat = list(chain.from_iterable(sentences))
    vocab: dict[str, int] = dict.fromkeys(flat)  # type: ignore[arg-type]
    for i, t in enumerate(vocab):
        vocab[t] = i
    ids = list(map(vocab.__getitem__, flat))
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    tokens = np.asarray(ids, dtype=np.int64)  # (total_tokens,)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    sent_of_tok = np.repeat(np.arange(len(sentences), dtype=np.int64), lengths)
    pos_in_sent = np.arange(len(tokens), dtype=np.int64) - np.repeat(starts, lengths)
    out: list[NgramCounts] = []
    code = tokens.copy()  # id of the n-gram starting at each token position (valid where it fits)
    n_codes = max(len(vocab), 1)
    for n in range(1, max_n + 1):
        if n > 1:
            # Extend the (n-1)-gram starting at each position by the token n-1 places on, and renumber
            # densely so that ids stay small.
            nxt = np.zeros_like(tokens)
            nxt[: len(tokens) - (n - 1)] = tokens[n - 1:]
            key = code * max(len(vocab), 1) + nxt
            fits = pos_in_sent + n <= np.repeat(lengths, lengths)
            uniq, inv = unique_inverse(np.where(fits, key, -1))
            code = inv.astype(np.int64)
            n_codes = len(uniq)
        fits = pos_in_sent + n <= np.repeat(lengths, lengths)
        s, g = sent_of_tok[fits], code[fits]
        pair, cnt = unique_counts(s * n_codes + g)
        out.append(NgramCounts(pair // n_codes, pair % n_codes, cnt.astype(np.int64), n_codes))
    return lengths, out
