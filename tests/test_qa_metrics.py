"""VQA accuracy and VisDial metrics against direct transcriptions of the official code, kept in this file:
GT-Vision-Lab/VQA vqaEval.py (master a013f00; Python 2, transcribed, not imported) and
visdial-challenge-starter-pytorch visdialch/metrics.py (its loops kept as written).
VQA: exact equality (both are rounded to 2 decimals the same way). VisDial: 1e-6, since the reference sums in
float32 and ours in float64. Inputs are built from real English phrases (the emoji names the ``emoji`` package
ships) and real answer variants (case, punctuation, number words, articles, contractions)."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from xmodal.errors import MetricInputError, ShapeError
from xmodal.metrics.qa import _round_half_up, visdial, vqa_accuracy, vqa_normalize

emoji = pytest.importorskip("emoji")


# --------------------------------------------------------------------------------------- official VQA, transcribed
class OfficialVQAEval:
    """vqaEval.VQAEval.evaluate and helpers, line by line, with Python 2's round()."""

    def __init__(self, n=2):
        self.n = n
        from xmodal.metrics.qa import _CONTRACTIONS  # the 100-entry table is data, copied verbatim there

        self.contractions = dict(_CONTRACTIONS)
        self.manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
        self.articles = ["a", "an", "the"]
        self.periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
        self.commaStrip = re.compile(r"(\d)(\,)(\d)")
        self.punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                      ",", "?", "!"]

    @staticmethod
    def py2_round(x, n):
        # Python 2 rounds exact halves away from zero; otherwise it agrees with Python 3's correctly rounded round.
        scaled = Fraction(x) * 10**n
        if scaled - int(scaled) == Fraction(1, 2):
            return float(Fraction(int(scaled) + 1, 10**n))
        return round(x, n)

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (re.search(self.commaStrip, inText) is not None):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        return " ".join(outText)

    def evaluate(self, gts, res):
        accQA, accQuesType, accAnsType, evalQA = [], {}, {}, {}
        for quesId in gts:
            for ansDic in gts[quesId]["answers"]:
                ansDic["answer"] = ansDic["answer"].replace("\n", " ")
                ansDic["answer"] = ansDic["answer"].replace("\t", " ")
                ansDic["answer"] = ansDic["answer"].strip()
            resAns = res[quesId]["answer"]
            resAns = resAns.replace("\n", " ")
            resAns = resAns.replace("\t", " ")
            resAns = resAns.strip()
            gtAcc = []
            gtAnswers = [ans["answer"] for ans in gts[quesId]["answers"]]
            if len(set(gtAnswers)) > 1:
                for ansDic in gts[quesId]["answers"]:
                    ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                    ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
                resAns = self.processPunctuation(resAns)
                resAns = self.processDigitArticle(resAns)
            for gtAnsDatum in gts[quesId]["answers"]:
                otherGTAns = [item for item in gts[quesId]["answers"] if item != gtAnsDatum]
                matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
                acc = min(1, float(len(matchingAns)) / 3)
                gtAcc.append(acc)
            quesType = gts[quesId]["question_type"]
            ansType = gts[quesId]["answer_type"]
            avgGTAcc = float(sum(gtAcc)) / len(gtAcc)
            accQA.append(avgGTAcc)
            accQuesType.setdefault(quesType, []).append(avgGTAcc)
            accAnsType.setdefault(ansType, []).append(avgGTAcc)
            evalQA[quesId] = self.py2_round(100 * avgGTAcc, self.n)
        r = self.py2_round
        return {
            "overall": r(100 * float(sum(accQA)) / len(accQA), self.n),
            "perQuestionType": {t: r(100 * float(sum(v)) / len(v), self.n) for t, v in accQuesType.items()},
            "perAnswerType": {t: r(100 * float(sum(v)) / len(v), self.n) for t, v in accAnsType.items()},
            "evalQA": evalQA,
        }


def _vqa_corpus(n_questions: int, seed: int):
    """Questions with ten human answers drawn around a true answer, with the variants people really type."""
    rng = np.random.RandomState(seed)
    names = sorted({d["en"].strip(":").replace("_", " ").lower() for d in emoji.EMOJI_DATA.values()})
    pools = {
        "yes/no": (["is the", "are there", "does this"], [["yes", "Yes", "yes.", "YES", " yes"], ["no", "No", "no!"]]),
        "number": (["how many", "what number is"],
                   [["2", "two", "Two", "2."], ["3", "three"], ["10", "ten"], ["0", "none", "zero"],
                    ["1,000", "1000"], ["2.5", "2,5"]]),
    }
    out = []
    for q in range(n_questions):
        kind = ["yes/no", "number", "other"][rng.randint(3)]
        if kind == "other":
            qtypes = ["what is the", "what color is the", "what is on the"]
            words = names[rng.randint(len(names))].split()[:2]
            base = " ".join(words)
            groups = [[base, "the " + base, "a " + base, base.title(), base + ".", base.replace(" ", "-"),
                       base + "'s", "dont know", "don't know"],
                      [names[rng.randint(len(names))], "t-shirt", "t shirt", "red/white", "on the left"]]
        else:
            qtypes, groups = pools[kind]
        truth = groups[rng.randint(len(groups))]
        agree = rng.choice([0.1, 0.3, 0.5, 0.8, 1.0])
        answers = []
        for _ in range(10):
            g = truth if rng.rand() < agree else groups[rng.randint(len(groups))]
            answers.append(g[0] if rng.rand() < 0.6 else g[rng.randint(len(g))])
        pg = groups[rng.randint(len(groups))]
        pred = pg[rng.randint(len(pg))] + ("\n" if rng.rand() < 0.05 else "")
        out.append((q, pred, answers, kind, qtypes[rng.randint(len(qtypes))]))
    return out


def test_vqa_equals_official_transcription():
    data = _vqa_corpus(2000, seed=0)
    gts = {q: {"answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                           for i, a in enumerate(ans)], "answer_type": at, "question_type": qt}
           for q, _, ans, at, qt in data}
    res = {q: {"answer": p, "question_id": q} for q, p, *_ in data}
    expected = OfficialVQAEval().evaluate(gts, res)
    ours = vqa_accuracy({q: p for q, p, *_ in data}, {q: a for q, _, a, *_ in data},
                        answer_types={q: at for q, *_, at, _ in data},
                        question_types={q: qt for q, *_, qt in data})
    assert ours["overall"] == expected["overall"]
    assert ours["per_answer_type"] == expected["perAnswerType"]
    assert ours["per_question_type"] == expected["perQuestionType"]
    assert ours["per_question"] == expected["evalQA"]
    # The corpus exercises every regime: exact, partial and zero credit.
    values = set(ours["per_question"].values())
    assert {0.0, 30.0, 60.0, 90.0, 100.0} <= values


def test_vqa_hand_computed_cases():
    others = ["cat", "dog", "bird", "fish", "cow", "pig", "owl"]
    # Three of ten humans agree with the prediction: (7 * 1 + 3 * 2/3) / 10 = 0.9.
    assert vqa_accuracy(["red"], [["red"] * 3 + others])["overall"] == 90.0
    # Two: (2 * 1/3 + 8 * 2/3) / 10 = 0.6. One: 9 * 1/3 / 10 = 0.3.
    assert vqa_accuracy(["red"], [["red"] * 2 + others + ["ant"]])["overall"] == 60.0
    assert vqa_accuracy(["red"], [["red"] + others + ["ant", "bee"]])["overall"] == 30.0
    # Ten identical answers: compared raw, so case matters...
    assert vqa_accuracy(["yes"], [["yes"] * 10])["overall"] == 100.0
    assert vqa_accuracy(["Yes"], [["yes"] * 10])["overall"] == 0.0
    assert vqa_accuracy(["yes"], [["Yes"] * 10])["overall"] == 0.0
    # ...but once the humans disagree everything is normalised, "Yes" and "yes." included.
    assert vqa_accuracy(["Yes"], [["yes"] * 9 + ["yes."]])["overall"] == 100.0
    assert vqa_accuracy(["two"], [["2"] * 4 + ["3"] * 6])["overall"] == 100.0
    assert vqa_accuracy(["the dog"], [["dog"] * 2 + ["a dog"] + others[:1] + others[2:] + ["ant"]]
                        )["overall"] == 90.0
    # Per answer type and per question, x100 and rounded to 2 digits.
    r = vqa_accuracy({"a": "red", "b": "no"}, {"a": ["red"] + others + ["x", "y"], "b": ["no"] * 10},
                     answer_types={"a": "other", "b": "yes/no"})
    assert r["overall"] == 65.0 and r["per_answer_type"] == {"other": 30.0, "yes/no": 100.0}
    assert r["per_question"] == {"a": 30.0, "b": 100.0}


def test_vqa_normalisation_and_rounding_details():
    assert vqa_normalize("  Two dogs! ") == "2 dogs"
    assert vqa_normalize("dont know") == "don't know"
    assert vqa_normalize("1,000") == "1000" and vqa_normalize("2.5") == "2.5" and vqa_normalize("end.") == "end"
    # Python 2 rounds exact halves away from zero; Python 3 would give 0.12.
    assert _round_half_up(0.125, 2) == 0.13 and round(0.125, 2) == 0.12
    assert _round_half_up(2.675, 2) == 2.67  # 2.675 is stored just below the half


# The answer processing that the VQA evaluation page (visualqa.org/evaluation.html) documents, with its own
# examples: lowercase; periods removed except in decimals; number words to digits; articles removed; a missing
# contraction apostrophe added ("dont" -> "don't"); other punctuation replaced by a space, except the apostrophe
# ("girl's" must not become "girls") and the colon ("2:50 pm"); a comma between digits is removed without a
# space ("100,978" -> "100978").
DOCUMENTED_EXAMPLES = {
    "dont": "don't",
    "girl's": "girl's",
    "2:50 pm": "2:50 pm",
    "100,978": "100978",
    "Two": "2",
    "ten": "10",
    "zero": "0",
    "A Dog": "dog",
    "the cat": "cat",
    "an apple": "apple",
    "3.5": "3.5",
    "yes.": "yes",
    "Mr.": "mr",
    "black/white": "black white",
    "red-and-white": "red and white",
}


@pytest.mark.parametrize("raw", list(DOCUMENTED_EXAMPLES))
def test_vqa_normalisation_follows_the_documented_processing(raw):
    assert vqa_normalize(raw) == DOCUMENTED_EXAMPLES[raw]


def test_vqa_documented_processing_applies_to_ground_truth_too():
    # Humans disagree, so predictions and ground truth are both processed: "Two" matches "2", "two" and "2";
    # three matches of ten: (3 * 2/3 + 7 * 1) / 10 = 0.9.
    assert vqa_accuracy(["Two"], [["2", "two", "2", "3", "3", "3", "3", "3", "3", "3"]])["overall"] == 90.0
    # The apostrophe is kept: "girls" does not match "girl's".
    assert vqa_accuracy(["girls"], [["girl's"] * 5 + ["girl"] * 5])["overall"] == 0.0


def test_vqa_bad_input_names_the_question():
    with pytest.raises(MetricInputError, match="question 'q2' has ground-truth answers but no prediction"):
        vqa_accuracy({"q1": "a"}, {"q1": ["a"], "q2": ["b"]})
    with pytest.raises(MetricInputError, match="question 'q9' has a prediction"):
        vqa_accuracy({"q1": "a", "q9": "b"}, {"q1": ["a"]})
    with pytest.raises(MetricInputError, match="question 'q1': expected a non-empty list"):
        vqa_accuracy({"q1": "a"}, {"q1": []})
    with pytest.raises(MetricInputError, match="question 'q1': the prediction is a int"):
        vqa_accuracy({"q1": 3}, {"q1": ["3"]})
    with pytest.raises(MetricInputError, match="question 'q1' has no answer type"):
        vqa_accuracy({"q1": "a"}, {"q1": ["a"]}, answer_types={})


# ------------------------------------------------------------------------------------ official VisDial, transcribed
def ref_scores_to_ranks(scores):
    batch_size, num_rounds, num_options = scores.size()
    scores = scores.view(-1, num_options)
    sorted_ranks, ranked_idx = scores.sort(1, descending=True)
    ranks = ranked_idx.clone().fill_(0)
    for i in range(ranked_idx.size(0)):
        for j in range(num_options):
            ranks[i][ranked_idx[i][j]] = j
    ranks += 1
    return ranks.view(batch_size, num_rounds, num_options)


def ref_sparse(predicted_scores, target_ranks):
    predicted_ranks = ref_scores_to_ranks(predicted_scores)
    batch_size, num_rounds, num_options = predicted_ranks.size()
    predicted_ranks = predicted_ranks.view(batch_size * num_rounds, num_options)
    target_ranks = target_ranks.view(batch_size * num_rounds).long()
    rank_list = torch.tensor(list(predicted_ranks[torch.arange(batch_size * num_rounds), target_ranks].numpy()))
    rank_list = rank_list.float()
    return {"r@1": torch.mean((rank_list <= 1).float()).item(), "r@5": torch.mean((rank_list <= 5).float()).item(),
            "r@10": torch.mean((rank_list <= 10).float()).item(), "mean": torch.mean(rank_list).item(),
            "mrr": torch.mean(rank_list.reciprocal()).item()}


def ref_ndcg(predicted_scores, target_relevance):
    def _dcg(rankings, relevance):
        sorted_relevance = relevance[rankings].cpu().float()
        discounts = torch.log2(torch.arange(len(rankings)).float() + 2)
        return torch.sum(sorted_relevance / discounts, dim=-1)

    predicted_ranks = ref_scores_to_ranks(predicted_scores.unsqueeze(1)).squeeze()
    batch_size, num_options = predicted_ranks.size()
    k = torch.sum(target_relevance != 0, dim=-1)
    _, rankings = torch.sort(predicted_ranks, dim=-1)
    _, best_rankings = torch.sort(target_relevance, dim=-1, descending=True)
    batch_ndcg = []
    for b in range(batch_size):
        n = k[b]
        batch_ndcg.append(_dcg(rankings[b][:n], target_relevance[b]) / _dcg(best_rankings[b][:n], target_relevance[b]))
    return float((0.0 + sum(batch_ndcg)) / batch_size)


def _visdial_corpus(dialogs: int, rounds: int, seed: int):
    """Answer options are real phrases; a model's score is its word overlap with a noisy copy of the true
    answer, which gives the many exact ties real retrieval scores have. Relevance is overlap with the truth."""
    rng = np.random.RandomState(seed)
    names = sorted({d["en"].strip(":").replace("_", " ").lower() for d in emoji.EMOJI_DATA.values()})
    scores = np.zeros((dialogs, rounds, 100), dtype=np.float32)
    gt = np.zeros((dialogs, rounds), dtype=np.int64)
    relevance = np.zeros((dialogs, 100), dtype=np.float32)
    dense_round = rng.randint(rounds, size=dialogs)
    for d in range(dialogs):
        for r in range(rounds):
            options = [names[i].split() for i in rng.choice(len(names), 100, replace=False)]
            gt[d, r] = rng.randint(100)
            truth = set(options[gt[d, r]])
            heard = {w for w in truth if rng.rand() < 0.6} | {names[rng.randint(len(names))].split()[0]}
            scores[d, r] = [len(heard & set(o)) for o in options]
            if r == dense_round[d]:
                overlap = np.array([len(truth & set(o)) / len(truth) for o in options])
                relevance[d] = np.round(overlap * 4) / 4  # quantised like crowd judgements
    return scores, gt, relevance, dense_round


def test_visdial_equals_official_transcription():
    scores, gt, relevance, dense_round = _visdial_corpus(30, 10, seed=1)
    s = torch.from_numpy(scores)
    expected = ref_sparse(s, torch.from_numpy(gt))
    dense_scores = s[torch.arange(s.shape[0]), torch.from_numpy(dense_round)]
    expected["ndcg"] = ref_ndcg(dense_scores, torch.from_numpy(relevance))
    ours = visdial(scores, gt, relevance, dense_round)
    assert set(ours) == set(expected)
    for key in expected:
        assert ours[key] == pytest.approx(expected[key], abs=1e-6), key
    # Ties are broken as torch.sort breaks them: equal scores do not share a rank.
    assert (scores == scores.max(-1, keepdims=True)).sum(-1).max() > 1
    assert 0.0 < ours["r@1"] < ours["r@5"] < ours["r@10"] < 1.0
    # Row layout (rounds flattened) and torch input give the same numbers.
    flat = visdial(torch.from_numpy(scores.reshape(-1, 100)), torch.from_numpy(gt.reshape(-1)))
    assert all(flat[k] == ours[k] for k in flat)


def test_visdial_hand_computed_and_edge_cases():
    # Options ranked 0, 1, 3, 2; k = 2 relevant options.
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    rel = np.array([[0.0, 1.0, 0.5, 0.0]])
    out = visdial(scores, np.array([2]), rel)
    dcg = 0 / np.log2(2) + 1 / np.log2(3)
    ideal = 1 / np.log2(2) + 0.5 / np.log2(3)
    assert out["ndcg"] == pytest.approx(dcg / ideal, abs=1e-15)
    assert out["mean"] == 4 and out["mrr"] == 0.25 and out["r@1"] == 0 and out["r@5"] == 1
    # One row works (the reference's squeeze() fails there); same as the row duplicated.
    two = visdial(np.repeat(scores, 2, 0), np.array([2, 2]), np.repeat(rel, 2, 0))
    assert two == out
    # All scores equal: torch.sort's order decides, as in the reference.
    flat = np.zeros((1, 1, 100), dtype=np.float32)
    assert visdial(flat, np.array([[7]]))["mean"] == ref_sparse(torch.from_numpy(flat), torch.tensor([[7]]))["mean"]
    with pytest.raises(MetricInputError, match="row 0 has no relevant option"):
        visdial(scores, relevance=np.zeros((1, 4)))
    with pytest.raises(MetricInputError, match=r"indices must lie in \[0, 4\)"):
        visdial(scores, np.array([4]))
    with pytest.raises(ShapeError, match="gt_index"):
        visdial(scores, np.array([[1, 2]]))
    with pytest.raises(MetricInputError, match="dense_round"):
        visdial(scores[None], relevance=rel)
