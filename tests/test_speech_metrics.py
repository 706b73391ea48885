"""WER / CER against jiwer 4 on thousands of real transcripts: the Unicode emoji names that the ``emoji`` package
ships (5,000+ short English phrases) and the ALSA test-clip names, with deterministic ASR-like perturbations.
Tolerance 1e-12 on rates; per-utterance counts must be equal."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

jiwer = pytest.importorskip("jiwer")
emoji = pytest.importorskip("emoji")

from xmodal.errors import MetricInputError  # noqa: E402
from xmodal.metrics.speech import cer, cer_details, wer, wer_details  # noqa: E402

TOL = 1e-12


def _sentences() -> list[str]:
    names = sorted({d["en"].strip(":").replace("_", " ") for d in emoji.EMOJI_DATA.values()})
    # Real file names of the alsa-utils voice clips ("Front_Left.wav" says "front left").
    alsa = sorted(os.path.basename(p)[:-4].replace("_", " ") for p in glob.glob("/usr/share/sounds/alsa/*.wav"))
    return alsa + names


def _perturb(sentences: list[str], seed: int) -> list[str]:
    """Deterministic ASR-like errors: dropped, substituted and inserted words, case and punctuation slips."""
    rng = np.random.RandomState(seed)
    vocab = sorted({w for s in sentences for w in s.split()})
    out = []
    for s in sentences:
        words = []
        for w in s.split():
            r = rng.rand()
            if r < 0.07:
                continue
            if r < 0.14:
                w = vocab[rng.randint(len(vocab))]
            elif r < 0.18:
                w = w.upper()
            elif r < 0.21:
                w = w + rng.choice([",", ".", "!", "?", "'s"])
            words.append(w)
            if rng.rand() < 0.06:
                words.append(vocab[rng.randint(len(vocab))])
        sep = "  " if rng.rand() < 0.05 else " "
        out.append(sep.join(words) + (" " if rng.rand() < 0.05 else ""))
    return out


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    refs = _sentences()
    assert len(refs) > 3500
    return refs, _perturb(refs, 0)


def _counts(o) -> tuple[int, int, int, int]:
    return o.substitutions, o.deletions, o.insertions, o.hits


def test_wer_cer_equal_jiwer_on_corpus(corpus):
    refs, hyps = corpus
    assert abs(wer(refs, hyps) - jiwer.wer(refs, hyps)) < TOL
    assert abs(cer(refs, hyps) - jiwer.cer(refs, hyps)) < TOL
    ours, theirs = wer_details(refs, hyps), jiwer.process_words(refs, hyps)
    assert _counts(ours.totals) == _counts(theirs)
    assert ours.references == theirs.references and ours.hypotheses == theirs.hypotheses
    ours_c, theirs_c = cer_details(refs, hyps), jiwer.process_characters(refs, hyps)
    assert _counts(ours_c.totals) == _counts(theirs_c)


@pytest.mark.slow
def test_per_utterance_counts_equal_jiwer_alignment(corpus):
    # S/D/I/H of one utterance depend on which optimal alignment is reported; ours must be jiwer's.
    refs, hyps = corpus
    words, chars = wer_details(refs, hyps), cer_details(refs, hyps)
    for k in range(0, len(refs), 3):
        assert _counts(words.per_utterance[k]) == _counts(jiwer.process_words(refs[k], hyps[k])), k
        assert _counts(chars.per_utterance[k]) == _counts(jiwer.process_characters(refs[k], hyps[k])), k
    # The pooled rate is not the mean of per-utterance rates.
    per = np.mean([c.error_rate for c in words.per_utterance])
    assert abs(per - words.error_rate) > 1e-3


def test_normalisations_equal_their_jiwer_transforms(corpus):
    refs, hyps = corpus
    refs, hyps = refs[:1500], hyps[:1500]
    lower_punct_w = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(),
                                   jiwer.RemoveWhiteSpace(replace_by_space=True), jiwer.RemoveMultipleSpaces(),
                                   jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
    lower_punct_c = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(),
                                   jiwer.RemoveWhiteSpace(replace_by_space=True), jiwer.RemoveMultipleSpaces(),
                                   jiwer.Strip(), jiwer.ReduceToListOfListOfChars()])
    none_w = jiwer.ReduceToListOfListOfWords()
    none_c = jiwer.ReduceToListOfListOfChars()
    cases = [
        ("lower_punct", wer, jiwer.wer, lower_punct_w),
        ("lower_punct", cer, jiwer.cer, lower_punct_c),
        ("jiwer_standardize", wer, jiwer.wer, jiwer.wer_standardize),
        ("none", wer, jiwer.wer, none_w),
        ("none", cer, jiwer.cer, none_c),
    ]
    for norm, ours, ref_fn, tr in cases:
        expected = ref_fn(refs, hyps, reference_transform=tr, hypothesis_transform=tr)
        assert abs(ours(refs, hyps, normalize=norm) - expected) < TOL, (norm, ours.__name__)
    # Normalising removes the case and punctuation slips, so the error rate drops.
    assert wer(refs, hyps, normalize="lower_punct") < wer(refs, hyps)
    # A callable runs before the default splitting.
    assert wer(refs, hyps, normalize=str.upper) == pytest.approx(
        jiwer.wer([r.upper() for r in refs], [h.upper() for h in hyps]), abs=TOL)


def test_edge_cases_follow_jiwer():
    # Empty reference: jiwer returns the number of inserted words.
    assert wer("", "a b c") == jiwer.wer("", "a b c") == 3
    assert wer(["", ""], ["x", "y z"]) == jiwer.wer(["", ""], ["x", "y z"]) == 3
    assert wer("", "") == jiwer.wer("", "") == 0
    # One empty reference among others is pooled normally.
    refs, hyps = ["", "the cat sat"], ["hello there", "the cat"]
    assert abs(wer(refs, hyps) - jiwer.wer(refs, hyps)) < TOL
    # WER above 1.
    assert abs(wer("yes", "no no no") - jiwer.wer("yes", "no no no")) < TOL
    assert wer("yes", "no no no") == 3.0
    # Empty hypothesis, tabs, repeated spaces, non-ASCII text.
    for r, h in [("guten Morgen", ""), ("a\tb  c ", " a b c"), ("café crème brûlée", "cafe crème brulée"),
                 ("日本語 の テスト", "日本 の テスト"), ("face with tears of joy 😂", "face with tears joy 😂 😂")]:
        assert abs(wer(r, h) - jiwer.wer(r, h)) < TOL, (r, h)
        assert abs(cer(r, h) - jiwer.cer(r, h)) < TOL, (r, h)
    d = wer_details("the quick brown fox", "the quack brown fox jumps")
    assert (d.totals.substitutions, d.totals.deletions, d.totals.insertions, d.totals.hits) == (1, 0, 1, 3)


def test_bad_input_raises_clear_errors():
    with pytest.raises(MetricInputError, match="2 references but 1 hypotheses"):
        wer(["a", "b"], ["a"])
    with pytest.raises(MetricInputError, match="item 1 is a int"):
        wer(["a", "b"], ["a", 3])  # type: ignore[list-item]
    with pytest.raises(MetricInputError, match="unknown normalisation"):
        wer("a", "a", normalize="whisper")
    with pytest.raises(MetricInputError, match="no utterances"):
        wer([], [])
