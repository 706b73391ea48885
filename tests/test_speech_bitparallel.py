"""The bit-parallel edit distance behind ``wer``/``cer`` equals rapidfuzz's Levenshtein distance (what jiwer 4
uses) exactly, for patterns of one and several 64-bit blocks, empty sides and tiny or huge alphabets; and
``cer`` equals jiwer on long (multi-block) real utterances. Tolerance: exact integers; 1e-12 on rates."""

from __future__ import annotations

import random

import numpy as np
import pytest

from xmodal.metrics.speech import _distances, cer, wer

rapidfuzz = pytest.importorskip("rapidfuzz")
jiwer = pytest.importorskip("jiwer")
emoji = pytest.importorskip("emoji")


def test_distances_equal_rapidfuzz():
    from rapidfuzz.distance import Levenshtein

    rng = random.Random(0)
    lengths = [0, 1, 3, 10, 63, 64, 65, 127, 128, 129, 200, 300]
    refs, hyps = [], []
    for _ in range(1500):
        alphabet = rng.choice([2, 4, 26, 100000])
        refs.append([rng.randrange(alphabet) for _ in range(rng.choice(lengths))])
        hyps.append([rng.randrange(alphabet) for _ in range(rng.choice(lengths))])
    ids = np.array([t for s in refs + hyps for t in s], dtype=np.int64)
    lens = np.array([len(s) for s in refs + hyps], dtype=np.int64)
    ours = _distances(ids, lens[: len(refs)], lens[len(refs):])
    expected = [Levenshtein.distance(a, b) for a, b in zip(refs, hyps)]
    np.testing.assert_array_equal(ours, expected)


def test_long_utterances_equal_jiwer():
    # Real phrases (emoji names) joined into 150-400 character utterances, perturbed deterministically.
    names = sorted({d["en"].strip(":").replace("_", " ") for d in emoji.EMOJI_DATA.values()})
    refs = [" ".join(names[i: i + 12]) for i in range(0, 2400, 12)]
    rng = random.Random(1)
    hyps = [" ".join(w for w in r.split() if rng.random() > 0.1).replace("e", "a", rng.randint(0, 3))
            for r in refs]
    assert max(map(len, refs)) > 256
    assert abs(cer(refs, hyps) - jiwer.cer(refs, hyps)) < 1e-12
    assert abs(wer(refs, hyps) - jiwer.wer(refs, hyps)) < 1e-12
