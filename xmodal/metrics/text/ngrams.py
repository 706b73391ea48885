"""Vectorised n-gram counting shared by BLEU and CIDEr-D.

Every sentence's n-grams (orders 1..4) become integer ids, and per-sentence counts become flat arrays
``(sentence, gram, count)`` sorted by sentence then gram, so that clipping, document frequencies and
dot products are numpy group operations instead of Python dictionaries per sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _stable_argsort(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` sorted and the stable order that sorts it (``np.argsort(x, kind="stable")``).

    When ``(value range) * len(x)`` fits in int64, value and position are packed into one key and sorted with
    ``np.sort`` (SIMD quicksort, several times faster than a stable argsort); the packing makes ties break by
    position, so the order is exactly the stable one.
    """
    n = len(x)
    if n == 0:
        return x.copy(), np.zeros(0, np.int64)
    lo, hi = int(x.min()), int(x.max())
    if (hi - lo + 1) * n < 2**62:
        key = (x.astype(np.int64) - lo) * n + np.arange(n, dtype=np.int64)
        key.sort()
        order = key % n
        return key // n + lo, order
    order = np.argsort(x, kind="stable")
    return x[order], order


def _run_starts(xs: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if not len(xs):
        return np.zeros(0, np.int64)
    new = np.empty(len(xs), dtype=bool)
    new[0] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    return np.flatnonzero(new)


# np.unique on int64 takes a hash-table path in numpy >= 2.3 that is ~100x slower than sorting on millions of
# n-gram keys; these sort-based versions return the same (sorted) values.
def unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-D integer array."""
    xs = np.sort(x)
    return xs[_run_starts(xs)]


def unique_first(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the index of the first occurrence of each (np.unique(return_index=True))."""
    xs, order = _stable_argsort(x)
    starts = _run_starts(xs)
    return xs[starts], order[starts]


def unique_inverse(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each element, the index of its value (np.unique(return_inverse=True))."""
    xs, order = _stable_argsort(x)
    starts = _run_starts(xs)
    run = np.zeros(len(xs), dtype=np.int64)
    run[starts[1:]] = 1
    inverse = np.empty(len(x), dtype=np.int64)
    inverse[order] = np.cumsum(run)
    return xs[starts], inverse


def unique_counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (np.unique(return_counts=True))."""
    xs = np.sort(x)
    starts = _run_starts(xs)
    return xs[starts], np.diff(np.append(starts, len(xs)))


@dataclass
class NgramCounts:
    """Counts of one n-gram order: parallel arrays, one entry per distinct (sentence, gram)."""

    sentence: np.ndarray  # (entries,) int64 sentence index
    gram: np.ndarray  # (entries,) int64 gram id, unique within the order
    count: np.ndarray  # (entries,) int64 occurrences of the gram in the sentence
    n_grams: int  # number of distinct grams of this order


def encode(sentences: list[list[str]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids ``(total_tokens,)`` (numbered by first appearance), lengths ``(sentences,)`` and vocabulary size."""
    from itertools import chain

    flat = list(chain.from_iterable(sentences))
    vocab: dict[str, int] = {t: i for i, t in enumerate(dict.fromkeys(flat))}  # ids by first appearance
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    return ids, lengths, len(vocab)


def count_ngrams(sentences: list[list[str]], max_n: int = 4) -> tuple[np.ndarray, list[NgramCounts]]:
    """Lengths ``(sentences,)`` and, per order 1..max_n, the n-gram counts of every sentence."""
    return count_ngrams_encoded(*encode(sentences), max_n)


def count_ngrams_encoded(tokens: np.ndarray, lengths: np.ndarray, n_vocab: int, max_n: int = 4
                         ) -> tuple[np.ndarray, list[NgramCounts]]:
    """:func:`count_ngrams` of sentences already turned into ids by :func:`encode`."""
    n_sent = len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n_sent else np.zeros(0, np.int64)
    sent_of_tok = np.repeat(np.arange(n_sent, dtype=np.int64), lengths)
    pos_in_sent = np.arange(len(tokens), dtype=np.int64) - np.repeat(starts, lengths)
    room = np.repeat(lengths, lengths) - pos_in_sent  # tokens from each position to its sentence's end
    out: list[NgramCounts] = []
    code = tokens.copy()  # id of the n-gram starting at each token position (valid where it fits)
    n_codes = max(n_vocab, 1)
    for n in range(1, max_n + 1):
        fits = room >= n
        if n > 1:
            # Extend the (n-1)-gram starting at each position by the token n-1 places on, and renumber
            # densely so that ids stay small.
            nxt = np.zeros_like(tokens)
            shifted = tokens[n - 1:]  # empty when the whole corpus is shorter than n tokens
            nxt[: len(shifted)] = shifted
            key = code * max(n_vocab, 1) + nxt
            uniq, inv = unique_inverse(np.where(fits, key, -1))
            code = inv
            n_codes = len(uniq)
        s, g = sent_of_tok[fits], code[fits]
        pair, cnt = unique_counts(s * n_codes + g)
        out.append(NgramCounts(pair // n_codes, pair % n_codes, cnt.astype(np.int64), n_codes))
    return lengths, out
