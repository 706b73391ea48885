"""The fast paths of the caption metrics give exactly the numbers of the plain paths they replace.

- Tokenizer: ``tokenize_caption`` (whitespace chunks, cached, simple chunks without the lexer) equals
  ``tokenize_caption_full`` (the lexer over the whole line) on ~60,000 real emoji names in 14 languages and on
  random chunks built from the characters the lexer treats specially. Exact string equality.
- ROUGE-L: the uint64 vectorised LCS equals the Python big-integer recurrence, including candidates longer
  than 64 tokens, empty captions and repeated spaces. Exact float equality.
No Java needed: the full lexer itself is checked against the Java PTBTokenizer in ``test_captions.py``.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from xmodal.metrics.captions import evaluate
from xmodal.metrics.text import ptb_tokenizer as ptb
from xmodal.metrics.text.rouge import _rouge_one, rouge_l_scores

emoji = pytest.importorskip("emoji")


def _names() -> list[str]:
    lines = []
    for lang in emoji.LANGUAGES:
        emoji.config.load_language(lang)
        lines += [d[lang].strip(":").replace("_", " ") for d in emoji.EMOJI_DATA.values() if lang in d]
    return list(dict.fromkeys(lines))


@pytest.mark.slow
def test_fast_tokenizer_equals_full_lexer_on_real_names():
    lines = _names()
    assert len(lines) > 50000
    bad = [(s, ptb.tokenize_caption(s), ptb.tokenize_caption_full(s)) for s in lines
           if ptb.tokenize_caption(s) != ptb.tokenize_caption_full(s)]
    assert not bad, bad[:5]


WORDS = ["a", "A", "no", "No", "fig", "Mass", "mass", "cannot", "Gonna", "dog", "www", "http", "etc", "Mr",
         "p", "x", "U", "s", "tis", "can", "n", "gov't", "3", "12", "5x", "ll", "O", "Neil", "l", "eau", "ma"]
MARKS = list("([{\"'`)]}\",;:?!.-&@/#*_0123456789’…+") + ["''", "``", "...", "n't", "'s", "'", "-"]


def test_fast_tokenizer_equals_full_lexer_on_random_chunks():
    rng = random.Random(7)

    def chunk() -> str:
        return "".join(rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(MARKS)
                       for _ in range(rng.randint(1, 6)))

    lines = [" ".join(chunk() for _ in range(rng.randint(1, 5))) for _ in range(6000)]
    # Lines where the lexer looks across a space: "No. 5" abbreviations and "3 1/2" fractions.
    lines += ["see No. 5 and fig. 3, pp. 10", "no. x", "add 3 1/2 cups", "a\u00a0b\tc\nd", "U.S. a. Mass."]
    bad = [(s, ptb.tokenize_caption(s), ptb.tokenize_caption_full(s)) for s in lines
           if ptb.tokenize_caption(s) != ptb.tokenize_caption_full(s)]
    assert not bad, bad[:5]


def test_vectorised_rouge_equals_big_integer_recurrence():
    rng = random.Random(3)
    vocab = ["a", "the", "dog", "cat", "on", "man", "red", "", "sits"]
    cands, refs = [], []
    for _ in range(400):
        cands.append(" ".join(rng.choice(vocab) for _ in range(rng.choice([0, 1, 5, 20, 63, 64, 65, 90]))))
        refs.append([" ".join(rng.choice(vocab) for _ in range(rng.choice([0, 1, 4, 30, 70])))
                     for _ in range(rng.randint(1, 4))])
    ours = rouge_l_scores(cands, refs)
    b2 = 1.2 ** 2
    expected = [_rouge_one(c.split(" "), [r.split(" ") for r in rs], b2) for c, rs in zip(cands, refs)]
    np.testing.assert_array_equal(ours, expected)
    # evaluate() shares token ids between BLEU/CIDEr-D and ROUGE-L; it must give the same ROUGE-L.
    _, per = evaluate(dict(enumerate(refs)), dict(enumerate(cands)), metrics=["rouge_l"], tokenize=False,
                      per_item=True)
    np.testing.assert_array_equal([per["ROUGE-L"][i] for i in range(len(cands))], expected)
