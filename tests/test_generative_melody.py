"""The melody prior (``generative_melody``): tokens against music21's own reading of a chorale, the n-gram
baselines by hand, and ``xmodal train`` then ``xmodal generate`` end to end: tokens.npy, MIDI (read back with
mido), WAV (read back with scipy; every note's pitch found by an FFT) and piano-roll PNGs, embedded or linked
by report.html, the same bytes for the same seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from midi_read import mido_notes
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import ConfigError

pytest.importorskip("music21")
pytest.importorskip("pretty_midi")

from xmodal.tasks import generative_melody as gm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
TINY = ["data.n_train=12", "data.n_val=4", "model.dim=32", "model.depth=1", "model.heads=2", "train.max_steps=20",
        "train.batch_size=16", "train.warmup=0", "train.eval_every=0", "train.sample_every=0", "train.progress=false",
        "train.tensorboard=false", "train.checkpoint_every=0"]
LEARN = ["data.n_train=80", "data.n_val=20", "model.dim=64", "model.depth=2", "train.max_steps=400",
         "train.batch_size=32", "train.lr=2e-3", "train.warmup=20", "train.eval_every=0", "train.sample_every=0",
         "train.progress=false", "train.tensorboard=false", "train.checkpoint_every=0"]


def test_tokens_follow_the_score() -> None:
    from music21 import corpus

    index = 1  # bach/bwv347 in music21 10's chorale list, in 4/4, quarters and eighths
    part = corpus.parse(gm._chorale_names()[index]).parts[0].stripTies()
    score_notes = [(float(n.offset), float(n.quarterLength), n.pitch.midi) for n in part.flatten().notes]
    tokens = gm.encode(gm.chorale_melody(index), 57, 84)
    assert tokens is not None and len(tokens) == round((score_notes[-1][0] + score_notes[-1][1]) * 4)
    for onset, length, pitch in score_notes:  # a sixteenth per token: the onset's pitch, then holds
        start, steps = round(onset * 4), round(length * 4)
        assert tokens[start] == 2 + pitch - 57 and (tokens[start + 1 : start + steps] == gm.HOLD).all()
    notes = gm.decode(tokens, 57)  # 100 bpm: a quarter note lasts 0.6 s
    assert np.allclose(notes[:, 0], [on * 0.6 for on, _, _ in score_notes])
    assert np.allclose(notes[:, 1] - notes[:, 0], [q * 0.6 for _, q, _ in score_notes])
    assert notes[:, 2].tolist() == [p for _, _, p in score_notes]
    assert gm.encode(((0.0, 1.0, 60), (1.0, 1 / 3, 62)), 57, 84) is None  # a triplet is off the grid
    assert gm.encode(((0.0, 1.0, 90),), 57, 84) is None  # out of range
    # a hold with nothing sounding (first token, after a rest) is silence
    assert np.allclose(gm.decode(np.array([1, 5, 1, 0, 1, 6]), 57), [[0.15, 0.45, 60, 90, 0], [0.75, 0.9, 61, 90, 0]])


def test_the_split_keeps_each_tune_on_one_side() -> None:
    groups = gm.tune_groups()
    assert sorted(i for g in groups for i in g) == list(range(gm.CHORALES))  # a partition of the 350 files
    assert len(groups) == 213 and max(map(len, groups)) == 11  # the committed grouping (ngram 12)
    group_of = {i: k for k, g in enumerate(groups) for i in g}
    for seed in range(5):
        train, held = gm.split(gm.DataConfig(n_train=280, n_val=60, seed=seed))
        assert len(train) == 280 and len(held) == 60
        assert not {group_of[i] for i in train} & {group_of[i] for i in held}
    with pytest.raises(ConfigError, match="data.n_train"):
        gm.split(gm.DataConfig(n_train=300, n_val=60))
    for section, match in [({"data": {"n_train": 0}}, "data.n_train"), ({"data": {"low": 80, "high": 60}}, "data.low"),
                           ({"data": {"seq_len": 1}}, "data.seq_len"), ({"model": {"heads": 0}}, "model.heads"),
                           ({"model": {"dropout": 1.0}}, "model.dropout"), ({"data": {"n_tran": 5}}, "n_tran")]:
        with pytest.raises(ConfigError, match=match):
            gm.check({"task": "generative_melody", **section})


def test_ngram_baselines_by_hand() -> None:
    import torch

    train, held = torch.tensor([[2, 2, 3]]), torch.tensor([[2, 3]])
    out = gm.ngram_bits(train, held, 4)
    # unigram: counts + 1 = [1, 1, 3, 2] of 7; bigram rows (add-one over 4 tokens): start -> 2 is 2/5,
    # 2 -> 3 is 2/6
    assert out["unigram"]["nll_bits"] == pytest.approx(-(math.log2(3 / 7) + math.log2(2 / 7)) / 2, abs=1e-12)
    assert out["bigram"]["nll_bits"] == pytest.approx(-(math.log2(2 / 5) + math.log2(2 / 6)) / 2, abs=1e-12)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("melody_run")
    args = ["train", str(REPO / "recipes" / "generative_melody.yaml"), "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _dominant_hz(segment: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n=16 * len(segment)))
    return float(np.argmax(spectrum) * rate / (16 * len(segment)))


def test_train_then_generate_writes_tokens_midi_wav(run_dir: Path, tmp_path: Path) -> None:
    from PIL import Image
    from scipy.io import wavfile

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["primary"] == "nll_bits" and set(metrics["baselines"]) == {"unigram", "bigram"}
    out = tmp_path / "a"
    result = runner.invoke(app, ["generate", str(run_dir), "--n", "3", "--seed", "5", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    tokens = np.load(out / "tokens.npy", allow_pickle=False)
    assert tokens.dtype == np.int64 and tokens.shape == (3, 64) and 0 <= tokens.min() and tokens.max() < 38
    page = (out / "report.html").read_text()
    info = json.loads((out / "generate.json").read_text())
    assert info["modality"] == "music" and len(info["files"]) == 1 + 3 * 3
    assert '<a href="tokens.npy">' in page
    step = 0.15  # a sixteenth at 100 bpm
    for i, row in enumerate(tokens):
        name = f"sample_{i:04d}"
        assert f'<audio controls src="{name}.wav">' in page and f'<a href="{name}.mid">' in page
        assert f'<img src="{name}.png"' in page
        expected = gm.decode(row, 53)
        midi = np.asarray(mido_notes(out / f"{name}.mid")).reshape(-1, 5)
        assert midi.shape == expected.shape and np.array_equal(midi[:, 2], expected[:, 2])
        assert np.max(np.abs(midi[:, :2] - expected[:, :2]), initial=0) <= 0.6 / 220  # one tick at 100 bpm
        rate, pcm = wavfile.read(out / f"{name}.wav")
        assert rate == 16000 and pcm.dtype == np.int16 and len(pcm) == round(64 * step * 16000)
        wave = pcm / 32767.0
        sounding = np.zeros(len(wave), dtype=bool)
        for start, end, pitch, _, _ in expected:
            a, b = round(start * rate), round(end * rate)
            sounding[a:b] = True
            hz = 440 * 2 ** ((pitch - 69) / 12)
            assert abs(_dominant_hz(wave[a:b], rate) - hz) < hz * 0.03  # within half a semitone
        assert np.all(pcm[~sounding] == 0)  # rests are silent
        with Image.open(out / f"{name}.png") as im:
            assert im.size == (64 * 4, 36 * 4)
    again = tmp_path / "b"
    assert runner.invoke(app, ["generate", str(run_dir), "--n", "3", "--seed", "5", "--out", str(again)]).exit_code == 0
    assert all((again / f).read_bytes() == (out / f).read_bytes() for f in info["files"])


def _shape(window: np.ndarray) -> tuple[int, ...]:
    """A window with its pitches relative to its first pitch: the same for the tune in any key."""
    pitches = window[window >= gm.FIRST_PITCH]
    base = int(pitches[0]) if len(pitches) else 0
    return tuple(np.where(window >= gm.FIRST_PITCH, window - base + 1000, window).tolist())


@pytest.mark.slow
def test_the_prior_beats_the_ngram_baselines(tmp_path: Path) -> None:
    """Reduced run (80 training chorales, 400 steps of a 2-layer prior): held-out bits per token below the
    bigram's, which are below the unigram's."""
    args = ["train", str(REPO / "recipes" / "generative_melody.yaml"), "--out", str(tmp_path / "run")]
    for item in LEARN:
        args += ["--set", item]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model, base = metrics["model"]["nll_bits"], metrics["baselines"]
    d = gm.DataConfig(n_train=80, n_val=20)
    train, held = (gm.windows(idx, d)[0].numpy() for idx in gm.split(d))
    shapes = {_shape(w) for w in train}
    assert not any(_shape(w) in shapes for w in held)  # the split by tune: no held-out window, in any key, trained
    assert model < base["bigram"]["nll_bits"] < base["unigram"]["nll_bits"], metrics
