"""Question-answering metrics: VQA accuracy and the VisDial ranking metrics, with the official numbers.

- :func:`vqa_accuracy` follows GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (master,
  commit a013f00 "Fixed processing answers bug"): per question, the mean over the ten human answers of
  ``min(1, #matches among the other nine / 3)``; answers are normalised (punctuation, number words, articles,
  contractions) only when the human answers disagree; results are x100 and rounded to ``ndigits``.
- :func:`visdial` follows batra-mlp-lab/visdial-challenge-starter-pytorch ``visdialch/metrics.py``: ranks from
  ``torch.sort(descending=True)`` (so ties keep torch's order), R@1/5/10, mean rank, MRR and NDCG@k with
  k = the number of options of nonzero relevance. It is vectorised (a scatter inverts the sort) where the
  reference loops over every option of every round in Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from xmodal.errors import MetricInputError, NonFiniteError, ShapeError

__all__ = ["vqa_accuracy", "vqa_normalize", "visdial"]

# ---------------------------------------------------------------------------------------------------------------
# VQA accuracy

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}
_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a mistyped look-behind that never fires,
# so it removes any "." not followed by a digit.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The official call is periodStrip.sub("", text, re.UNICODE): the flag lands in `count`, so at most
# re.UNICODE (= 32) periods are removed. Kept for exactness.
_PERIOD_COUNT = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    out = text
    has_digit_comma = _COMMA_STRIP.search(text) is not None  # the reference re-searches it for every mark
    for p in _PUNCT:
        if has_digit_comma or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, _PERIOD_COUNT)


def _process_digit_article(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_normalize(answer: str) -> str:
    """The official answer normalisation: punctuation, then number words, articles and contractions."""
    return _process_digit_article(_process_punctuation(_clean(answer)))


def _round_half_up(x: float, ndigits: int) -> float:
    # The reference runs on Python 2, whose round() takes exact halves away from zero (Python 3 rounds them to
    # even). Decimal(x) is the exact binary value, so this matches Python 2.7's correctly rounded round().
    return float(Decimal(x).quantize(Decimal(1).scaleb(-ndigits), rounding=ROUND_HALF_UP))


def _question_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over the human answers of min(1, matches among the others / 3), as vqaEval.evaluate."""
    gts = [_clean(a) for a in answers]
    res = _clean(prediction)
    if len(set(gts)) > 1:  # normalise only when the humans disagree
        gts = [_process_digit_article(_process_punctuation(a)) for a in gts]
        res = _process_digit_article(_process_punctuation(res))
    matches = sum(g == res for g in gts)
    # Leave-one-out by position: the reference drops the one answer dict equal to the current one, and the
    # answer ids make the ten dicts distinct.
    accs = [min(1, float(matches - (g == res)) / 3) for g in gts]
    return float(sum(accs)) / len(accs)


def _keyed(x: Mapping | Sequence, name: str) -> dict:
    if isinstance(x, Mapping):
        return dict(x)
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence):
        raise MetricInputError(f"expected a mapping {{question_id: ...}} or a list, got {type(x).__name__}", name)
    return dict(enumerate(x))


def vqa_accuracy(predictions: Mapping[Any, str] | Sequence[str],
                 gt_answers: Mapping[Any, Sequence[str]] | Sequence[Sequence[str]],
                 answer_types: Mapping[Any, str] | Sequence[str] | None = None,
                 question_types: Mapping[Any, str] | Sequence[str] | None = None,
                 ndigits: int = 2) -> dict[str, Any]:
    """VQA accuracy exactly as the official ``vqaEval.py`` (GT-Vision-Lab/VQA, Python 2).

    ``predictions`` maps a question id to the predicted answer, ``gt_answers`` maps it to the human answers (ten in
    VQA v1/v2); lists are keyed by position. Per question the accuracy is the mean, over each human answer left
    out in turn, of ``min(1, #other answers equal to the prediction / 3)``, so three agreeing humans give 0.9.
    Answers are stripped; when the human answers are not all identical, prediction and answers are also
    normalised (punctuation, number words to digits, articles dropped, contractions), otherwise compared
    raw (so ``"Yes"`` does not match ten ``"yes"``).

    Returns ``overall``, ``per_answer_type`` and ``per_question_type`` (when types are given) and
    ``per_question``, each x100 and rounded to ``ndigits`` like the reference (Python 2 rounding).
    """
    preds = _keyed(predictions, "predictions")
    gts = _keyed(gt_answers, "gt_answers")
    missing = [q for q in gts if q not in preds]
    extra = [q for q in preds if q not in gts]
    if missing:
        raise MetricInputError(f"question {missing[0]!r} has ground-truth answers but no prediction "
                               f"({len(missing)} such questions)", "predictions")
    if extra:
        raise MetricInputError(f"question {extra[0]!r} has a prediction but no ground-truth answers "
                               f"({len(extra)} such questions)", "gt_answers")
    if not gts:
        raise MetricInputError("no questions to evaluate", "gt_answers")
    types = {"per_answer_type": answer_types, "per_question_type": question_types}
    typed = {k: _keyed(v, k.replace("per_", "") + "s") for k, v in types.items() if v is not None}
    for key, mapping in typed.items():
        lacking = [q for q in gts if q not in mapping]
        if lacking:
            raise MetricInputError(f"question {lacking[0]!r} has no {key[4:].replace('_', ' ')}", key[4:] + "s")

    per_question: dict[Any, float] = {}
    acc_all: list[float] = []
    groups: dict[str, dict[str, list[float]]] = {k: {} for k in typed}
    for q, answers in gts.items():
        pred = preds[q]
        if not isinstance(pred, str):
            raise MetricInputError(f"question {q!r}: the prediction is a {type(pred).__name__}, not a string",
                                   "predictions")
        if isinstance(answers, str) or not isinstance(answers, Sequence) or len(answers) == 0:
            raise MetricInputError(f"question {q!r}: expected a non-empty list of answer strings, got {answers!r}",
                                   "gt_answers")
        if not all(isinstance(a, str) for a in answers):
            raise MetricInputError(f"question {q!r}: every ground-truth answer must be a string", "gt_answers")
        acc = _question_accuracy(pred, answers)
        acc_all.append(acc)
        per_question[q] = _round_half_up(100 * acc, ndigits)
        for key, mapping in typed.items():
            groups[key].setdefault(mapping[q], []).append(acc)

    def mean100(values: list[float]) -> float:
        return _round_half_up(100 * float(sum(values)) / len(values), ndigits)

    result: dict[str, Any] = {"overall": mean100(acc_all)}
    for key, by_type in groups.items():
        result[key] = {t: mean100(v) for t, v in by_type.items()}
    result["per_question"] = per_question
    return result


# ---------------------------------------------------------------------------------------------------------------
# Visual dialog


def _tensor(x: Any, name: str):
    import torch

    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise NonFiniteError("holds NaN or infinity", name)
    return t


def visdial(scores: Any, gt_index: Any = None, relevance: Any = None, dense_round: Any = None
            ) -> dict[str, float]:
    """VisDial metrics as ``visdialch/metrics.py`` (visdial-challenge-starter-pytorch).

    ``scores``: (dialogs, rounds, options) or (rows, options) scores of the answer options, higher is better
    (numpy or torch). ``gt_index``: (dialogs, rounds) or (rows,) 0-based index of the ground-truth option; gives
    ``r@1``, ``r@5``, ``r@10``, ``mean`` (mean rank, 1-based) and ``mrr``. ``relevance``: (dialogs, options)
    dense relevance of one round per dialog, that round given by ``dense_round`` (0-based, i.e. the dataset's
    ``round_id - 1``) when ``scores`` has rounds, else row-aligned with ``scores``; gives ``ndcg``, NDCG@k with
    k = the number of options of nonzero relevance. Ranks come from ``torch.sort(descending=True)`` on the
    scores as given, so ties are ordered as in the reference. Sums are in float64 (the reference uses float32,
    so its values differ from these by float32 rounding, about 1e-7).
    """
    import torch

    s = _tensor(scores, "scores")
    if s.dim() not in (2, 3) or s.shape[-1] < 1:
        raise ShapeError(f"expected (dialogs, rounds, options) or (rows, options), got {tuple(s.shape)}", "scores")
    if gt_index is None and relevance is None:
        raise MetricInputError("give gt_index (for R@k, mean rank, MRR) and/or relevance (for NDCG)", "visdial")
    n_opt = s.shape[-1]
    # Invert the descending sort with a scatter instead of the reference's per-option loop.
    order = torch.sort(s, dim=-1, descending=True).indices  # (..., options)
    positions = torch.arange(n_opt).expand_as(order)
    out: dict[str, float] = {}
    if gt_index is not None:
        g = _tensor(gt_index, "gt_index").long()
        if tuple(g.shape) != tuple(s.shape[:-1]):
            raise ShapeError(f"shape {tuple(g.shape)} does not match the scores' {tuple(s.shape[:-1])}",
                             "gt_index")
        if g.numel() and (g.min() < 0 or g.max() >= n_opt):
            raise MetricInputError(f"indices must lie in [0, {n_opt}), got {int(g.min())}..{int(g.max())}",
                                   "gt_index")
        ranks = torch.empty_like(order).scatter_(-1, order, positions) + 1  # 1-based rank of each option
        r = ranks.gather(-1, g.unsqueeze(-1)).reshape(-1).double()
        out.update({"r@1": (r <= 1).double().mean().item(), "r@5": (r <= 5).double().mean().item(),
                    "r@10": (r <= 10).double().mean().item(), "mean": r.mean().item(),
                    "mrr": r.reciprocal().mean().item()})
    if relevance is not None:
        rel = _tensor(relevance, "relevance").double()
        if s.dim() == 3:
            if dense_round is None:
                raise MetricInputError("scores have rounds: give dense_round, the annotated round per dialog",
                                       "dense_round")
            dr = _tensor(dense_round, "dense_round").long().reshape(-1)
            if dr.numel() != s.shape[0] or (dr.numel() and (dr.min() < 0 or dr.max() >= s.shape[1])):
                raise ShapeError(f"expected {s.shape[0]} round indices in [0, {s.shape[1]})", "dense_round")
            order = order[torch.arange(s.shape[0]), dr]  # (dialogs, options)
        if tuple(rel.shape) != tuple(order.shape):
            raise ShapeError(f"shape {tuple(rel.shape)}, expected {tuple(order.shape)}", "relevance")
        k = (rel != 0).sum(-1, keepdim=True)  # (rows, 1)
        if (k == 0).any():
            row = int(torch.nonzero(k.reshape(-1) == 0)[0])
            raise MetricInputError(f"row {row} has no relevant option, so its NDCG is 0/0", "relevance")
        in_top_k = torch.arange(n_opt).unsqueeze(0) < k  # (rows, options)
        discounts = torch.log2(torch.arange(n_opt, dtype=torch.float64) + 2)
        dcg = (rel.gather(-1, order) / discounts * in_top_k).sum(-1)
        ideal = (torch.sort(rel, dim=-1, descending=True).values / discounts * in_top_k).sum(-1)
        out["ndcg"] = (dcg / ideal).mean().item()
    return out
