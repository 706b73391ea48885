"""Word and character error rates (WER, CER) with jiwer 4's numbers, the normalisation made explicit.

Reference: jiwer 4.0 ``process_words`` / ``process_characters`` (Levenshtein alignment by rapidfuzz). The error
rate is pooled over the corpus, ``sum(S + D + I) / sum(N_ref)``, not a mean of per-utterance rates. As in jiwer,
an error rate can exceed 1, and when every reference is empty the "rate" is the number of inserted tokens.

Per-utterance substitutions, deletions, insertions and hits follow the same alignment jiwer reports (rapidfuzz's
Hyyrö backtrace after stripping the common prefix and suffix), so they equal jiwer's, not just their sum.
The alignments are computed by a dynamic programme vectorised over whole batches of utterances; ``wer`` and
``cer``, which need only the distances, use the bit-parallel recurrence of Myers (1999) / Hyyro (2003) on
uint64 words, vectorised over utterances.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np

from xmodal.errors import MetricInputError

_levenshtein: Any
try:  # a dependency of xmodal; the numpy distances below remain for an environment without it
    from rapidfuzz.distance import Levenshtein as _levenshtein
except ImportError:  # pragma: no cover
    _levenshtein = None

__all__ = ["wer", "cer", "wer_details", "cer_details", "ErrorCounts", "ErrorRateResult", "NORMALIZERS"]

NORMALIZERS = ("jiwer", "none", "lower_punct", "jiwer_standardize")

# Largest DP table (batch x ref x hyp cells) held at once; bounds memory to a few tens of MB.
_MAX_CELLS = 4_000_000

_MULTI_SPACE = re.compile(r"\s\s+")  # jiwer RemoveMultipleSpaces
_KALDI_NON_WORD = re.compile(r"[<\[][^>\]]*[>\]]")  # jiwer RemoveKaldiNonWords
_CONTRACTIONS = [  # jiwer ExpandCommonEnglishContractions, in its order
    (r"won't", "will not"), (r"can\'t", "can not"), (r"let\'s", "let us"), (r"n\'t", " not"),
    (r"\'re", " are"), (r"\'s", " is"), (r"\'d", " would"), (r"\'ll", " will"), (r"\'t", " not"),
    (r"\'ve", " have"), (r"\'m", " am"),
]
_ASCII_WHITESPACE = str.maketrans({c: " " for c in string.whitespace})  # jiwer RemoveWhiteSpace(True)


@lru_cache(maxsize=4096)
def _is_punct(ch: str) -> bool:
    # jiwer RemovePunctuation: every code point whose Unicode category starts with "P".
    return unicodedata.category(ch).startswith("P")


def _collapse(s: str) -> str:
    return _MULTI_SPACE.sub(" ", s).strip()


def _normalize_text(s: str, normalize: str | Callable[[str], str]) -> str:
    """The string before splitting, for each normalisation (see :func:`wer`)."""
    if callable(normalize):
        return _collapse(normalize(s))
    if normalize == "jiwer":
        return _collapse(s)
    if normalize == "none":
        return s
    if normalize == "lower_punct":
        s = "".join(c for c in s.lower() if not _is_punct(c))
        return _collapse(s.translate(_ASCII_WHITESPACE))
    if normalize == "jiwer_standardize":
        s = s.lower()
        for pat, rep in _CONTRACTIONS:
            s = re.sub(pat, rep, s)
        s = _KALDI_NON_WORD.sub("", s)
        return _collapse(s.translate(_ASCII_WHITESPACE))
    raise MetricInputError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALIZERS)} "
                           "or pass a callable str -> str", "normalize")


def _words(s: str, normalize: str | Callable[[str], str]) -> list[str]:
    # jiwer ReduceToListOfListOfWords: split on " " and drop empty pieces.
    if normalize == "jiwer" and s.isprintable():
        # A printable string has no whitespace but " ": collapsing runs, stripping and splitting on " " with
        # empty pieces dropped is then exactly str.split().
        return s.split()
    return [w for w in _normalize_text(s, normalize).split(" ") if w]


def _char_text(s: str, normalize: str | Callable[[str], str]) -> str:
    # jiwer cer_default strips only the ends; inner spaces are characters too.
    if normalize == "jiwer":
        return s.strip()
    if callable(normalize):
        return normalize(s).strip()
    return _normalize_text(s, normalize)


def _chars(s: str, normalize: str | Callable[[str], str]) -> list[str]:
    return list(_char_text(s, normalize))


@dataclass(frozen=True)
class ErrorCounts:
    """Edit operations of one utterance (or of a corpus): ``ref_len = hits + substitutions + deletions``."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def hyp_len(self) -> int:
        return self.hits + self.substitutions + self.insertions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def error_rate(self) -> float:
        """(S + D + I) / N_ref; the number of insertions when the reference is empty (as jiwer)."""
        n = self.ref_len
        return float(self.insertions) if n == 0 else self.errors / n


@dataclass(frozen=True)
class ErrorRateResult:
    """A pooled error rate with its totals and the per-utterance counts."""

    error_rate: float
    totals: ErrorCounts
    per_utterance: list[ErrorCounts] = field(repr=False)
    references: list[list[str]] = field(repr=False)
    hypotheses: list[list[str]] = field(repr=False)


def _as_list(x: str | Sequence[str], name: str) -> list[str]:
    if isinstance(x, str):
        return [x]
    if not isinstance(x, Sequence):
        raise MetricInputError(f"expected a string or a list of strings, got {type(x).__name__}", name)
    for i, s in enumerate(x):
        if not isinstance(s, str):
            raise MetricInputError(f"item {i} is a {type(s).__name__}, not a string", name)
    return list(x)


def _affix(a: list[int], b: list[int]) -> tuple[int, int]:
    """Lengths of the common prefix, then of the common suffix of what remains (rapidfuzz common_affix)."""
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p] == b[p]:
        p += 1
    s = 0
    la, lb = len(a), len(b)
    while s < n - p and a[la - 1 - s] == b[lb - 1 - s]:
        s += 1
    return p, s


def _batch_counts(refs: list[list[int]], hyps: list[list[int]]) -> np.ndarray:
    """(S, D, I) per pair of non-empty token-id sequences, one DP table per batch. Returns (B, 3) int64."""
    b = len(refs)
    la = np.array([len(r) for r in refs])
    lb = np.array([len(h) for h in hyps])
    m, n = int(la.max()), int(lb.max())
    ref = np.full((b, m), -1, dtype=np.int64)  # padding ids never equal a real id nor each other
    hyp = np.full((b, n), -2, dtype=np.int64)
    ref[np.arange(m) < la[:, None]] = np.fromiter(chain.from_iterable(refs), np.int64, int(la.sum()))
    hyp[np.arange(n) < lb[:, None]] = np.fromiter(chain.from_iterable(hyps), np.int64, int(lb.sum()))
    # dist[k, i, j] = edit distance between ref[k, :i] and hyp[k, :j]  # (batch, m + 1, n + 1)
    dist = np.empty((b, m + 1, n + 1), dtype=np.int32)
    ar = np.arange(n + 1, dtype=np.int32)
    dist[:, 0, :] = ar
    tmp = np.empty((b, n + 1), dtype=np.int32)
    for i in range(1, m + 1):
        prev = dist[:, i - 1, :]
        cost = (ref[:, i - 1 : i] != hyp).astype(np.int32)  # (batch, n)
        tmp[:, 0] = i
        np.minimum(prev[:, 1:] + 1, prev[:, :-1] + cost, out=tmp[:, 1:])
        # Insertions chain along the row: dist[i, j] = min_k (tmp[k] + j - k), a running minimum.
        dist[:, i, :] = np.minimum.accumulate(tmp - ar, axis=1) + ar
    # Backtrace all pairs at once, preferring deletion, then insertion, then the diagonal, exactly as
    # rapidfuzz's Levenshtein.editops reads its bit vectors (VP: dist[i,j] - dist[i-1,j] == 1, VN: == -1).
    rows = np.arange(b)
    col, row = la.copy(), lb.copy()  # col walks the reference, row the hypothesis
    subs = np.zeros(b, dtype=np.int64)
    dels = np.zeros(b, dtype=np.int64)
    ins = np.zeros(b, dtype=np.int64)
    while True:
        active = (col > 0) & (row > 0)
        if not active.any():
            break
        c1 = np.maximum(col - 1, 0)
        vp = dist[rows, col, row] - dist[rows, c1, row] == 1
        is_del = active & vp
        other = active & ~vp
        dels += is_del
        col = col - is_del
        row = row - other
        is_ins = other & (row > 0) & (dist[rows, col, row] - dist[rows, c1, row] == -1)
        ins += is_ins
        diag = other & ~is_ins
        col = col - diag
        subs += diag & (ref[rows, np.clip(col, 0, m - 1)] != hyp[rows, np.clip(row, 0, n - 1)])
    dels += col
    ins += row
    return np.stack([subs, dels, ins], axis=1)


def _edit_counts(refs: list[list[int]], hyps: list[list[int]]) -> np.ndarray:
    """(S, D, I, H) per utterance, shape (N, 4), with jiwer's (rapidfuzz's) alignment."""
    out = np.zeros((len(refs), 4), dtype=np.int64)
    core: list[tuple[int, list[int], list[int]]] = []
    for k, (r, h) in enumerate(zip(refs, hyps)):
        p, s = _affix(r, h)
        a, b = r[p : len(r) - s], h[p : len(h) - s]
        if not a or not b:
            out[k, 1], out[k, 2] = len(a), len(b)
        else:
            core.append((k, a, b))
    # Sort by shape so each batch wastes little padding, and cap each batch's table size.
    core.sort(key=lambda t: (len(t[1]), len(t[2])))
    start = 0
    while start < len(core):
        end, m, n = start, 0, 0
        while end < len(core):
            m2, n2 = max(m, len(core[end][1])), max(n, len(core[end][2]))
            if end > start and (end - start + 1) * (m2 + 1) * (n2 + 1) > _MAX_CELLS:
                break
            m, n, end = m2, n2, end + 1
        chunk = core[start:end]
        counts = _batch_counts([c[1] for c in chunk], [c[2] for c in chunk])
        out[[c[0] for c in chunk], :3] = counts
        start = end
    lens = np.array([len(r) for r in refs], dtype=np.int64)
    out[:, 3] = lens - out[:, 0] - out[:, 1]
    return out


def _pair_up(reference: str | Sequence[str], hypothesis: str | Sequence[str]) -> tuple[list[str], list[str]]:
    refs = _as_list(reference, "reference")
    hyps = _as_list(hypothesis, "hypothesis")
    if len(refs) != len(hyps):
        raise MetricInputError(f"{len(refs)} references but {len(hyps)} hypotheses; they must pair up",
                               "hypothesis")
    if not refs:
        raise MetricInputError("no utterances to score", "reference")
    return refs, hyps


def _distances(ids: np.ndarray, ref_len: np.ndarray, hyp_len: np.ndarray) -> np.ndarray:
    """Levenshtein distance of each (reference, hypothesis) pair (N,), int64.

    ``ids`` concatenates the token ids of all references, then of all hypotheses. The shorter side of each pair
    is the pattern, cut into 64-bit blocks, and the bit-parallel recurrence of Myers (1999) / Hyyro (2003) runs
    over the longer side, vectorised over the pairs that need the same number of blocks. The distance equals
    the full dynamic programme's; only S + D + I is known, not its split.
    """
    r_start = np.cumsum(ref_len) - ref_len
    h_start = int(ref_len.sum()) + np.cumsum(hyp_len) - hyp_len
    swap = hyp_len < ref_len
    p_len = np.where(swap, hyp_len, ref_len)
    t_len = np.where(swap, ref_len, hyp_len)
    p_start = np.where(swap, h_start, r_start)
    t_start = np.where(swap, r_start, h_start)
    dist = np.where(p_len == 0, t_len, 0).astype(np.int64)
    blocks = (p_len + 63) // 64
    single = np.flatnonzero(blocks == 1)
    if len(single):
        dist[single] = _myers(ids, p_start[single], p_len[single], t_start[single], t_len[single], 1)
    # Longer patterns run together, padded to the most blocks in a batch; batches cap the step table's size.
    multi = np.flatnonzero(blocks > 1)
    multi = multi[np.argsort(t_len[multi] * blocks[multi], kind="stable")]
    start = 0
    while start < len(multi):
        end, nb = start + 1, int(blocks[multi[start]])
        while end < len(multi):
            nb2 = max(nb, int(blocks[multi[end]]))
            if (end + 1 - start) * int(t_len[multi[end]] + nb2) * nb2 > _MAX_CELLS:
                break
            end, nb = end + 1, nb2
        sel = multi[start:end]
        dist[sel] = _myers(ids, p_start[sel], p_len[sel], t_start[sel], t_len[sel], nb)
        start = end
    return dist


def _myers(ids: np.ndarray, p_start: np.ndarray, pl: np.ndarray, t_start: np.ndarray, tl: np.ndarray,
           n_blocks: int) -> np.ndarray:
    """Edit distances of pairs whose patterns (1..64 * n_blocks tokens) all take ``n_blocks`` uint64 blocks."""

    def gather(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Token ids of the given segments, concatenated, and the position of each inside its segment.
        offs = np.cumsum(length) - length
        pos = np.arange(int(length.sum()), dtype=np.int64) - np.repeat(offs, length)
        return ids[np.repeat(start, length) + pos], pos

    k, nb = len(pl), n_blocks
    p_tok, p_pos = gather(p_start, pl)
    t_tok, t_pos = gather(t_start, tl)
    vocab = int(max(p_tok.max(), t_tok.max(initial=0))) + 1
    # Peq: bit i of block b of the mask of (pair, token) is set where pattern token 64 b + i is that token.
    key = np.repeat(np.arange(k, dtype=np.int64), pl) * vocab + p_tok
    key_blk = key * nb + p_pos // 64
    order = np.argsort(key_blk, kind="stable")
    key_blk = key_blk[order]
    bits = np.left_shift(np.uint64(1), (p_pos[order] % 64).astype(np.uint64))
    first = np.flatnonzero(np.concatenate([[True], key_blk[1:] != key_blk[:-1]]))
    kb, blk_mask = key_blk[first], np.bitwise_or.reduceat(bits, first)
    keys = kb // nb
    if nb > 1:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # sorted already: drop repeats
    masks = np.zeros((len(keys) + 1, nb), dtype=np.uint64)  # last row: a token absent from the pattern
    masks[np.searchsorted(keys, kb // nb), kb % nb] = blk_mask
    t_pair = np.repeat(np.arange(k, dtype=np.int64), tl)
    q = t_pair * vocab + t_tok
    at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    row = np.where(keys[at] == q, at, len(keys))
    m = pl
    last_blk = (m - 1) // 64  # each pattern's last block; blocks above it (padding) are never read
    last_bits = m - 64 * last_blk  # pattern bits in the last block, 1..64
    score = m.astype(np.int64)
    one = np.uint64(1)
    # Bits above a pattern's end hold garbage, harmless: carries and shifts only move upwards, and a block
    # passes only its top bit's horizontal delta (hout) to the next.
    with np.errstate(over="ignore"):
        if nb == 1:
            return _myers_one_block(masks[row, 0], t_pos, t_pair, tl, last_bits, score)
        # Several blocks: a wavefront, block b of every pair handling text token t - b at step t, so that the
        # block receives the horizontal delta its lower neighbour produced for that token one step earlier.
        t_max = int(tl.max())
        rows = np.full((k, t_max + 2 * nb), len(keys), dtype=np.int64)  # padded: no token before or after
        rows[t_pair, t_pos + nb] = row
        blk = np.arange(nb)
        steps = t_max + nb - 1
        # eq[t, p, b]: mask of the text token that block b of pair p reads at step t (position t - b).
        eq_all = masks[rows[:, np.arange(steps)[:, None] - blk[None, :] + nb], blk].transpose(1, 0, 2)
        j_all = np.arange(steps)[:, None] - blk[None, :]
        top = np.full((k, nb), np.uint64(1) << np.uint64(63))
        top[np.arange(k), last_blk] = np.left_shift(one, (last_bits - 1).astype(np.uint64))
        pv = np.full((k, nb), np.uint64(0xFFFFFFFFFFFFFFFF))
        mv = np.zeros((k, nb), dtype=np.uint64)
        hin_pos = np.zeros((k, nb), dtype=np.uint64)  # horizontal delta into each block, as 0/1 (+1 / -1)
        hin_neg = np.zeros((k, nb), dtype=np.uint64)
        hin_pos[:, 0] = 1  # the first block's hin is always +1: the DP's top row counts up
        pk = np.arange(k)
        for t in range(steps):
            j = j_all[t]
            valid = (j >= 0) & (j < tl[:, None])
            eq = eq_all[t]
            xv = eq | mv
            eq = eq | hin_neg
            xh = (((eq & pv) + pv) ^ pv) | eq
            ph = mv | ~(xh | pv)
            mh = pv & xh
            out_pos = (ph & top) != 0
            out_neg = (mh & top) != 0
            ph = (ph << one) | hin_pos
            mh = (mh << one) | hin_neg
            np.copyto(pv, mh | ~(xv | ph), where=valid)
            np.copyto(mv, ph & xv, where=valid)
            # Block b + 1 reads this token at the next step, with this block's hout as its hin.
            hin_pos[:, 1:] = out_pos[:, :-1]
            hin_neg[:, 1:] = out_neg[:, :-1]
            score += valid[pk, last_blk] * (out_pos[pk, last_blk].astype(np.int64) - out_neg[pk, last_blk])
    return score


def _myers_one_block(t_mask: np.ndarray, t_pos: np.ndarray, t_pair: np.ndarray, tl: np.ndarray,
                     m: np.ndarray, score: np.ndarray) -> np.ndarray:
    """One-block patterns (``m`` <= 64 tokens): all pairs advance one text token per step, hin always +1.

    Text masks are laid out column by column over the pairs sorted by decreasing text length, so the pairs
    still running at column j are a prefix of that order.
    """
    k = len(tl)
    by_len = np.argsort(-tl, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[by_len] = np.arange(k)
    active = np.bincount(tl, minlength=int(tl.max()) + 1)[::-1].cumsum()[::-1][1:]
    col = np.concatenate([[0], np.cumsum(active)[:-1]])
    laid = np.empty(len(t_mask), dtype=np.uint64)
    laid[col[t_pos] + rank[t_pair]] = t_mask
    m = m[by_len]
    top = np.left_shift(np.uint64(1), (m - 1).astype(np.uint64))
    pv = np.full(k, np.uint64(0xFFFFFFFFFFFFFFFF))
    mv = np.zeros(k, dtype=np.uint64)
    sc = score[by_len]
    one = np.uint64(1)
    for j, a in enumerate(active.tolist()):
        eq = laid[col[j]: col[j] + a]
        p, v, tp = pv[:a], mv[:a], top[:a]
        xv = eq | v
        xh = (((eq & p) + p) ^ p) | eq
        ph = v | ~(xh | p)
        mh = p & xh
        sc[:a] += ((ph & tp) != 0).view(np.int8) - ((mh & tp) != 0).view(np.int8)
        ph = (ph << one) | one
        pv[:a] = (mh << one) | ~(xv | ph)
        mv[:a] = ph & xv
    out = np.empty(k, dtype=np.int64)
    out[by_len] = sc
    return out


def _error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str],
                normalize: str | Callable[[str], str], words: bool) -> float:
    """Pooled WER (``words``) or CER from edit distances alone, without the alignment."""
    refs, hyps = _pair_up(reference, hypothesis)
    if words:
        toks = [_words(t, normalize) for t in chain(refs, hyps)]
        vocab: dict[str, int] = {w: i for i, w in enumerate(dict.fromkeys(chain.from_iterable(toks)))}
        flat = list(chain.from_iterable(toks))
        ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        lens = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
    else:
        texts = [_char_text(t, normalize) for t in chain(refs, hyps)]
        n = len(refs)
        ref_total = sum(map(len, texts[:n]))
        if _levenshtein is not None:
            # rapidfuzz's C++ Levenshtein distance (Hyyro's bit-parallel algorithm, the one jiwer's editops run
            # on) straight on the strings: no alignment is needed for the rate, and on long utterances the
            # numpy wavefront below loses to it by its per-step overhead.
            errors = sum(map(_levenshtein.distance, texts[:n], texts[n:]))
            return float(errors) if ref_total == 0 else errors / ref_total
        # A character is its own id: the code points of all texts at once.
        ids = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    n = len(refs)
    dist = _distances(ids, lens[:n], lens[n:])
    errors, ref_total = int(dist.sum()), int(lens[:n].sum())
    # As ErrorCounts.error_rate: the number of insertions (here all edits) when every reference is empty.
    return float(errors) if ref_total == 0 else errors / ref_total


def _details(reference: str | Sequence[str], hypothesis: str | Sequence[str],
             normalize: str | Callable[[str], str], split: Callable) -> ErrorRateResult:
    refs, hyps = _pair_up(reference, hypothesis)
    ref_toks = [split(s, normalize) for s in refs]
    hyp_toks = [split(s, normalize) for s in hyps]
    if split is _chars:  # a character is its own integer id
        ref_ids = [list(map(ord, t)) for t in ref_toks]
        hyp_ids = [list(map(ord, t)) for t in hyp_toks]
    else:
        vocab = {w: i for i, w in enumerate(dict.fromkeys(chain.from_iterable(ref_toks + hyp_toks)))}
        ref_ids = [list(map(vocab.__getitem__, t)) for t in ref_toks]
        hyp_ids = [list(map(vocab.__getitem__, t)) for t in hyp_toks]
    counts = _edit_counts(ref_ids, hyp_ids)
    per = [ErrorCounts(*row) for row in counts.tolist()]
    s, d, i, h = (int(v) for v in counts.sum(axis=0))
    totals = ErrorCounts(s, d, i, h)
    return ErrorRateResult(totals.error_rate, totals, per, ref_toks, hyp_toks)


def wer_details(reference: str | Sequence[str], hypothesis: str | Sequence[str],
                normalize: str | Callable[[str], str] = "jiwer") -> ErrorRateResult:
    """WER with totals and per-utterance substitutions, deletions, insertions and hits (jiwer.process_words)."""
    return _details(reference, hypothesis, normalize, _words)


def cer_details(reference: str | Sequence[str], hypothesis: str | Sequence[str],
                normalize: str | Callable[[str], str] = "jiwer") -> ErrorRateResult:
    """CER with totals and per-utterance counts (jiwer.process_characters)."""
    return _details(reference, hypothesis, normalize, _chars)


def wer(reference: str | Sequence[str], hypothesis: str | Sequence[str],
        normalize: str | Callable[[str], str] = "jiwer") -> float:
    """Corpus word error rate ``sum(S + D + I) / sum(N_ref)``, equal to ``jiwer.wer`` (jiwer 4).

    ``reference`` and ``hypothesis`` are one string each or two lists that pair up. ``normalize``:

    - ``"jiwer"`` (default): jiwer's ``wer_default``: runs of 2+ whitespace characters become one space, ends
      are stripped, words are split on spaces. Case and punctuation count, so ``"Hello,"`` != ``"hello"``.
    - ``"none"``: the text as given, split on single spaces (empty pieces dropped).
    - ``"lower_punct"``: lower-case, delete every Unicode punctuation character (category P*), map ASCII
      whitespace to spaces, then as ``"jiwer"``. Equals jiwer with ``ToLowerCase, RemovePunctuation,
      RemoveWhiteSpace(replace_by_space=True), RemoveMultipleSpaces, Strip, ReduceToListOfListOfWords``.
    - ``"jiwer_standardize"``: jiwer's ``wer_standardize``: lower-case, expand English contractions, drop Kaldi
      non-words (``[laugh]``, ``<unk>``), whitespace to spaces, then as ``"jiwer"``.
    - a callable ``str -> str`` (e.g. Whisper's ``EnglishTextNormalizer``), applied before ``"jiwer"``.

    When every reference is empty the result is the number of inserted words, as in jiwer.
    """
    # Only the distance is needed for the rate: bit-parallel distances, no alignment.
    return _error_rate(reference, hypothesis, normalize, words=True)


def cer(reference: str | Sequence[str], hypothesis: str | Sequence[str],
        normalize: str | Callable[[str], str] = "jiwer") -> float:
    """Corpus character error rate, equal to ``jiwer.cer`` (jiwer 4); spaces inside a sentence are characters.

    ``normalize`` is as for :func:`wer`, except that ``"jiwer"`` is jiwer's ``cer_default`` (strip the ends
    only, inner whitespace kept as is) and ``"none"`` keeps every character, ends included.
    """
    return _error_rate(reference, hypothesis, normalize, words=False)
