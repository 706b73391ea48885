"""Modality registry: every modality the toolkit names is there, and its encoder follows from its nature."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from xmodal.modalities import MODALITIES, UnknownModalityError, default_encoder_for, get_modality

SURVEY_MODALITIES = [
    "image", "video", "waveform", "spectrogram", "piano_roll", "midi_notes", "vq_tokens", "caption", "dialog",
    "question", "answer", "asr_transcript", "ocr_transcript", "graph", "optical_flow", "point_cloud", "mesh",
    "skeleton_2d", "skeleton_3d", "smpl",
]


def test_every_named_modality_is_registered() -> None:
    assert set(SURVEY_MODALITIES) <= set(MODALITIES)


@pytest.mark.parametrize("name,encoder", [
    ("image", "cnn2d"), ("video", "cnn3d"), ("waveform", "cnn1d"), ("spectrogram", "cnn2d"),
    ("caption", "transformer"), ("vq_tokens", "transformer"), ("midi_notes", "transformer"),
    ("graph", "gnn"), ("mesh", "gnn"), ("point_cloud", "pointnet"), ("smpl", "ssm"), ("piano_roll", "cnn2d"),
])
def test_default_encoder_follows_nature(name: str, encoder: str) -> None:
    spec = get_modality(name)
    assert spec.default_encoder == encoder
    assert spec.default_encoder == default_encoder_for(spec.continuous, spec.structure, spec.spatial_dims,
                                                       spec.long_sequence)
    assert spec.rationale


def test_nature_fields() -> None:
    img, cap, wav = get_modality("image"), get_modality("caption"), get_modality("waveform")
    assert img.continuous and img.raw and img.axes == ("channels", "height", "width") and img.rate is None
    assert not cap.continuous and not cap.raw and cap.is_text
    assert wav.rate == 16000.0 and wav.length_axis == 1
    assert get_modality("audio") is wav  # alias


def test_unknown_modality_names_it_and_the_known_ones() -> None:
    with pytest.raises(UnknownModalityError) as err:
        get_modality("smell")
    msg = str(err.value)
    assert "'smell'" in msg and "point_cloud" in msg and "caption" in msg
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_cli_prints_table() -> None:
    from xmodal.cli import app

    result = CliRunner().invoke(app, ["modalities"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in SURVEY_MODALITIES:
        assert name in result.output
    assert "pointnet" in result.output and "ssm" in result.output
