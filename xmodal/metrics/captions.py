"""Caption metrics with pycocoevalcap's numbers: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D and SPICE.

``evaluate`` reproduces ``pycocoevalcap`` (coco-caption): captions are tokenized like its Java PTBTokenizer (in
pure Python, see :mod:`xmodal.metrics.text.ptb_tokenizer`), then BLEU, ROUGE-L and CIDEr-D are computed
vectorised over the corpus; METEOR runs the METEOR 1.5 jar in one long-lived Java process; SPICE runs the
SPICE jar when the user provides it with its CoreNLP models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from xmodal.errors import MetricInputError
from xmodal.metrics.text.bleu import bleu
from xmodal.metrics.text.cider import cider_d_scores
from xmodal.metrics.text.ngrams import count_ngrams_encoded, encode
from xmodal.metrics.text.ptb_tokenizer import tokenize_caption
from xmodal.metrics.text.rouge import rouge_l_encoded, rouge_l_scores

__all__ = ["evaluate", "METRICS", "DEFAULT_METRICS"]

METRICS = ("bleu", "meteor", "rouge_l", "cider_d", "spice")
DEFAULT_METRICS = ("bleu", "meteor", "rouge_l", "cider_d")


def _check(references: Mapping[object, Sequence[str]], candidates: Mapping[object, str | Sequence[str]]
           ) -> tuple[list[object], list[list[str]], list[str]]:
    """Validate the two mappings and return ids (in the references' order), references and candidates."""
    only_refs = [k for k in references if k not in candidates]
    only_cands = [k for k in candidates if k not in references]
    if only_refs:
        raise MetricInputError(f"id {only_refs[0]!r} has references but no candidate "
                               f"({len(only_refs)} such ids)", "candidates")
    if only_cands:
        raise MetricInputError(f"id {only_cands[0]!r} has a candidate but no references "
                               f"({len(only_cands)} such ids)", "references")
    if not references:
        raise MetricInputError("no ids to evaluate: references and candidates are empty", "references")
    ids, refs, cands = [], [], []
    for k, rs in references.items():
        if isinstance(rs, str) or not isinstance(rs, Sequence):
            raise MetricInputError(f"id {k!r}: references must be a list of strings, got {type(rs).__name__}",
                                   "references")
        if len(rs) == 0:
            raise MetricInputError(f"id {k!r}: empty reference list (at least one reference is needed)",
                                   "references")
        for r in rs:
            if not isinstance(r, str):
                raise MetricInputError(f"id {k!r}: reference {r!r} is a {type(r).__name__}, not a string",
                                       "references")
        c = candidates[k]
        if not isinstance(c, str):
            # pycocoevalcap's own layout is a one-element list.
            if isinstance(c, Sequence) and len(c) == 1 and isinstance(c[0], str):
                c = c[0]
            else:
                raise MetricInputError(f"id {k!r}: the candidate must be one string, got {c!r}", "candidates")
        ids.append(k)
        refs.append(list(rs))
        cands.append(c)
    return ids, refs, cands


def evaluate(references: Mapping[object, Sequence[str]], candidates: Mapping[object, str],
             metrics: Sequence[str] | None = None, tokenize: bool = True, per_item: bool = False,
             meteor_jar: str | os.PathLike | None = None, spice_jar: str | os.PathLike | None = None,
             ) -> dict[str, float] | tuple[dict[str, float], dict[str, dict[object, float]]]:
    """Score ``candidates`` ({id: caption}) against ``references`` ({id: [captions]}) like pycocoevalcap.

    ``metrics`` names any of ``bleu, meteor, rouge_l, cider_d, spice`` (default: all but ``spice``); the result
    has keys ``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE-L``, ``CIDEr-D`` and ``SPICE``. ``tokenize=True``
    applies pycocoevalcap's PTB tokenization and punctuation removal; ``tokenize=False`` takes the captions as
    space-separated tokens. With ``per_item=True`` a second dict maps each metric to ``{id: score}``.
    """
    wanted = tuple(DEFAULT_METRICS if metrics is None else metrics)
    unknown = [m for m in wanted if m not in METRICS]
    if unknown:
        raise MetricInputError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}", "metrics")
    ids, refs, cands = _check(references, candidates)
    if tokenize:
        cache: dict[str, str] = {}
        flat = [r for rs in refs for r in rs]
        for text in dict.fromkeys(cands + flat):  # each distinct caption once
            cache[text] = tokenize_caption(text)
        refs = [[cache[r] for r in rs] for rs in refs]
        cands = [cache[c] for c in cands]
    scores: dict[str, float] = {}
    items: dict[str, np.ndarray | list[float]] = {}
    n_refs = np.fromiter(map(len, refs), dtype=np.int64, count=len(refs))
    sentences = cands + [r for rs in refs for r in rs]
    # BLEU and CIDEr-D take str.split() tokens, ROUGE-L str.split(" ") ones: token ids are computed once and
    # shared when the two agree (every sentence is its words joined by single spaces, or empty). Captions repeat
    # (references shared between images), so each distinct one is split and encoded once, in order of first
    # appearance, which numbers the tokens exactly as encoding every sentence would.
    if {"bleu", "rouge_l", "cider_d"} & set(wanted):
        uniq = list(dict.fromkeys(sentences))
        where: dict[str, int] = {t: i for i, t in enumerate(uniq)}
        u_toks = [t.split() for t in uniq]
        u_ids, u_len, n_vocab = encode(u_toks)
        sel = np.fromiter(map(where.__getitem__, sentences), dtype=np.int64, count=len(sentences))
        toks = [u_toks[i] for i in sel.tolist()]
        lengths = u_len[sel]
        offs = np.cumsum(lengths) - lengths
        pos = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(offs, lengths)
        tok_ids = u_ids[np.repeat((np.cumsum(u_len) - u_len)[sel], lengths) + pos]
    if "bleu" in wanted or "cider_d" in wanted:
        cand_toks = toks[: len(cands)]
        ref_toks, k = [], len(cands)
        for n in n_refs.tolist():
            ref_toks.append(toks[k: k + n])
            k += n
        counts = count_ngrams_encoded(tok_ids, lengths, n_vocab, 4)
    if "bleu" in wanted:
        corpus, per = bleu(cand_toks, ref_toks, 4, counts)
        for k in range(4):
            scores[f"BLEU-{k + 1}"] = float(corpus[k])
            items[f"BLEU-{k + 1}"] = per[:, k]
    if "meteor" in wanted:
        from xmodal.metrics.text.meteor import meteor

        scores["METEOR"], items["METEOR"] = meteor(cands, refs, meteor_jar)
    if "rouge_l" in wanted:
        if list(map(" ".join, u_toks)) == uniq:
            # split(" ") == split() for every sentence but the empty one, which split(" ") makes one empty
            # token: give it a fresh id.
            empty = np.flatnonzero(lengths == 0)
            if len(empty):
                starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
                tok_ids, lengths = np.insert(tok_ids, starts[empty], n_vocab), np.maximum(lengths, 1)
            per_r = rouge_l_encoded(tok_ids, lengths, n_refs)
        else:
            per_r = rouge_l_scores(cands, refs)
        scores["ROUGE-L"], items["ROUGE-L"] = float(np.mean(per_r)), per_r
    if "cider_d" in wanted:
        per_c = cider_d_scores(cand_toks, ref_toks, counts=counts)
        scores["CIDEr-D"], items["CIDEr-D"] = float(np.mean(per_c)), per_c
    if "spice" in wanted:
        from xmodal.metrics.text.spice import spice

        scores["SPICE"], items["SPICE"] = spice(cands, refs, ids, spice_jar)
    if not per_item:
        return scores
    return scores, {name: {i: float(v) for i, v in zip(ids, vals)} for name, vals in items.items()}
