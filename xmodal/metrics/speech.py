"""Word and character error rates (WER, CER) with jiwer 4's numbers, the normalisation made explicit.

Reference: jiwer 4.0 ``process_words`` / ``process_characters`` (Levenshtein alignment by rapidfuzz). The error
rate is pooled over the corpus, ``sum(S + D + I) / sum(N_ref)``, not a mean of per-utterance rates. As in jiwer,
an error rate can exceed 1, and when every reference is empty the "rate" is the number of inserted tokens.

Per-utterance substitutions, deletions, insertions and hits follow the same alignment jiwer reports (rapidfuzz's
Hyyrö backtrace after stripping the common prefix and suffix), so they equal jiwer's, not just their sum.
The edit distances are computed by a dynamic programme vectorised over whole batches of utterances.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

import numpy as np

from xmodal.errors import MetricInputError

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
    return [w for w in _normalize_text(s, normalize).split(" ") if w]


def _chars(s: str, normalize: str | Callable[[str], str]) -> list[str]:
    # jiwer cer_default strips only the ends; inner spaces are characters too.
    if normalize == "jiwer":
        return list(s.strip())
    if callable(normalize):
        return list(normalize(s).strip())
    return list(_normalize_text(s, normalize))


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


def _batch_counts(refs: list[list[int]], hyps: list[list[int]], align: bool = True) -> np.ndarray:
    """(S, D, I) per pair of non-empty token-id sequences, one DP table per batch. Returns (B, 3) int64.
    With ``align=False`` only the edit distance is computed, returned as S with D = I = 0."""
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
    if not align:
        out = np.zeros((b, 3), dtype=np.int64)
        out[:, 0] = dist[np.arange(b), la, lb]
        return out

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


def _edit_counts(refs: list[list[int]], hyps: list[list[int]], align: bool = True) -> np.ndarray:
    """(S, D, I, H) per utterance, shape (N, 4), with jiwer's (rapidfuzz's) alignment. Without ``align``,
    column 0 holds all edits (S + D + I) of the core and the split between S, D and I is not resolved."""
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
        counts = _batch_counts([c[1] for c in chunk], [c[2] for c in chunk], align)
        out[[c[0] for c in chunk], :3] = counts
        start = end
    lens = np.array([len(r) for r in refs], dtype=np.int64)
    out[:, 3] = lens - out[:, 0] - out[:, 1]
    return out


def _details(reference: str | Sequence[str], hypothesis: str | Sequence[str],
             normalize: str | Callable[[str], str], split: Callable, align: bool = True) -> ErrorRateResult:
    refs = _as_list(reference, "reference")
    hyps = _as_list(hypothesis, "hypothesis")
    if len(refs) != len(hyps):
        raise MetricInputError(f"{len(refs)} references but {len(hyps)} hypotheses; they must pair up",
                               "hypothesis")
    if not refs:
        raise MetricInputError("no utterances to score", "reference")
    ref_toks = [split(s, normalize) for s in refs]
    hyp_toks = [split(s, normalize) for s in hyps]
    if split is _chars:  # a character is its own integer id
        ref_ids = [list(map(ord, t)) for t in ref_toks]
        hyp_ids = [list(map(ord, t)) for t in hyp_toks]
    else:
        vocab = {w: i for i, w in enumerate(dict.fromkeys(chain.from_iterable(ref_toks + hyp_toks)))}
        ref_ids = [list(map(vocab.__getitem__, t)) for t in ref_toks]
        hyp_ids = [list(map(vocab.__getitem__, t)) for t in hyp_toks]
    counts = _edit_counts(ref_ids, hyp_ids, align)
    # Without the alignment the per-utterance split is unresolved, so it is not exposed.
    per = [ErrorCounts(*row) for row in counts.tolist()] if align else []
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
    # Only the distance is needed for the rate, so the alignment backtrace is skipped.
    return _details(reference, hypothesis, normalize, _words, align=False).error_rate


def cer(reference: str | Sequence[str], hypothesis: str | Sequence[str],
        normalize: str | Callable[[str], str] = "jiwer") -> float:
    """Corpus character error rate, equal to ``jiwer.cer`` (jiwer 4); spaces inside a sentence are characters.

    ``normalize`` is as for :func:`wer`, except that ``"jiwer"`` is jiwer's ``cer_default`` (strip the ends
    only, inner whitespace kept as is) and ``"none"`` keeps every character, ends included.
    """
    return _details(reference, hypothesis, normalize, _chars, align=False).error_rate
