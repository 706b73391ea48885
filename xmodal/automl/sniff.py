"""What one file holds, from its content: magic bytes and headers first, then a bounded decode.

``sniff(path)`` returns a :class:`Sniffed` (the modality spec name and the facts that decided it) or raises a
typed error naming the file (:class:`~xmodal.errors.CorruptFileError` for a file that cannot be decoded).
Extensions are only a tie-breaker: a PNG named ``.jpg`` is an image, a ``.wav`` holding text is not audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmodal.data.io._common import decoding
from xmodal.errors import CorruptFileError, EmptyInputError

BINARY_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".wav", ".flac", ".ogg", ".oga", ".mp3",
                   ".m4a", ".mp4", ".avi", ".mkv", ".webm", ".mov", ".mid", ".midi", ".npz", ".npy")
SKELETON_KEYS = ("keypoints", "joints", "skeleton", "positions", "pose", "poses_2d", "poses_3d")


@dataclass
class Sniffed:
    """``modality``: a spec name; ``format``: what the bytes are (PNG, MP3, PLY...); ``facts``: what the
    decode saw (image mode, has audio, array keys); ``text``: the content of a text file."""

    modality: str
    format: str
    facts: dict[str, object] = field(default_factory=dict)
    text: str | None = None


def _image(p: Path, fmt: str) -> Sniffed:
    from PIL import Image

    with decoding(p, "image"), Image.open(p) as im:
        im.load()
        return Sniffed("image", fmt, {"mode": im.mode, "size": im.size})


def _audio(p: Path, fmt: str) -> Sniffed:
    import soundfile as sf

    with decoding(p, "audio"):
        info = sf.info(str(p))
        sf.read(str(p), frames=min(info.frames, 4096), dtype="float32")  # a header alone can lie
    if info.frames == 0:
        raise EmptyInputError("audio file holds no samples", source=p)
    return Sniffed("waveform", fmt, {"sample_rate": info.samplerate, "channels": info.channels,
                                     "seconds": round(info.frames / info.samplerate, 2)})


def _video(p: Path, fmt: str) -> Sniffed:
    import av

    with decoding(p, "video"), av.open(str(p)) as c:
        if not c.streams.video:
            if c.streams.audio:  # an .m4a / audio-only mp4 is sound, not video
                return Sniffed("waveform", fmt + " (audio only)", {"channels": c.streams.audio[0].channels})
            raise CorruptFileError("container holds no video or audio stream", source=p)
        next(iter(c.decode(video=0)))  # one frame must decode
        return Sniffed("video", fmt, {"audio": bool(c.streams.audio)})


def _midi(p: Path) -> Sniffed:
    import pretty_midi

    with decoding(p, "MIDI"):
        pm = pretty_midi.PrettyMIDI(str(p))
    n = sum(len(i.notes) for i in pm.instruments)
    if n == 0:
        raise EmptyInputError("MIDI file holds no notes", source=p)
    return Sniffed("midi_notes", "MIDI", {"notes": n})


def _geometry(p: Path, fmt: str) -> Sniffed:
    from xmodal.data.io import read_mesh

    verts, faces = read_mesh(p) if p.suffix.lower() in (".ply", ".off") else _copy_as(p, fmt, read_mesh)
    kind = "mesh" if len(faces) else "point_cloud"
    return Sniffed(kind, fmt, {"vertices": len(verts), "faces": len(faces)})


def _copy_as(p: Path, fmt: str, reader):
    """read_mesh picks its parser by suffix; a PLY/OFF file under another name is read through a link."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        link = Path(d) / ("x." + fmt.lower())
        link.symlink_to(p.resolve())
        try:
            return reader(link)
        except CorruptFileError as exc:
            raise CorruptFileError(str(exc).split(": ", 1)[-1], source=p) from exc


def classify_arrays(arrays: dict[str, np.ndarray], p: Path | str, fmt: str = "NPZ") -> Sniffed:
    """An .npz / .npy by its keys and shapes: graph, mesh, point cloud, SMPL, skeleton, flow, VQ codes."""
    keys = set(arrays)
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    facts: dict[str, object] = {"arrays": {k: list(s) for k, s in shapes.items()}}
    if {"x", "edge_index"} <= keys or {"x", "edges"} <= keys:
        return Sniffed("graph", fmt, facts)
    if {"poses", "betas"} <= keys or {"poses", "trans"} <= keys:
        return Sniffed("smpl", fmt, facts)
    pts_key = next((k for k in ("vertices", "points", "pos", "xyz") if k in keys), None)
    if pts_key and len(shapes[pts_key]) == 2 and shapes[pts_key][1] == 3:
        has_faces = "faces" in keys and arrays["faces"].size > 0
        return Sniffed("mesh" if has_faces else "point_cloud", fmt, facts)
    for k in keys & {"mel", "logmel", "log_mel", "spectrogram", "spec"}:
        if arrays[k].ndim == 2:
            return Sniffed("spectrogram", fmt, facts)
    for k in keys & {"roll", "piano_roll", "pianoroll"}:
        if arrays[k].ndim == 2 and arrays[k].shape[0] == 128:
            return Sniffed("piano_roll", fmt, facts)
    skel = next((k for k in SKELETON_KEYS if k in keys), None)
    if skel is None and len(keys) == 1:
        skel = next(iter(keys))
    if skel is not None:
        a = arrays[skel]
        if a.ndim == 3 and a.shape[2] in (2, 3) and a.shape[1] > 1:
            return Sniffed("skeleton_2d" if a.shape[2] == 2 else "skeleton_3d", fmt, facts)
        if a.ndim == 4 and a.shape[1] == 2:
            return Sniffed("optical_flow", fmt, facts)
        if a.ndim == 2 and a.shape[1] == 3 and np.issubdtype(a.dtype, np.floating):
            return Sniffed("point_cloud", fmt, facts)
        if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
            return Sniffed("vq_tokens", fmt, facts)
        if a.ndim == 2 and a.shape[0] == 128 and a.shape[1] > 1:
            return Sniffed("piano_roll", fmt, facts)
    raise CorruptFileError(f"arrays {shapes} match no modality (graph x/edge_index, mesh vertices/faces, "
                           "points (N, 3), skeleton (time, joints, 2|3), SMPL poses/betas, flow (T, 2, H, W), "
                           "codes (tokens,))", source=p)


def _arrays(p: Path, npy: bool) -> Sniffed:
    with decoding(p, "array file"):
        if npy:
            arrays = {"array": np.load(p, allow_pickle=False)}
        else:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
    return classify_arrays(arrays, p, "NPY" if npy else "NPZ")


def _text_or_json(p: Path) -> Sniffed:
    if p.suffix.lower() in BINARY_SUFFIXES:  # a media name with no media bytes: damaged, not text
        raise CorruptFileError(f"no {p.suffix} content (its first bytes match no known format)", source=p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CorruptFileError("unknown binary format (no known magic bytes, not UTF-8 text)", source=p) from None
    stripped = text.strip()
    if not stripped:
        raise EmptyInputError("text file is empty", source=p)
    if stripped[0] in "{[" and (p.suffix.lower() == ".json" or stripped[-1] in "}]"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise CorruptFileError(f"invalid JSON: {exc}", source=p) from exc
        if isinstance(doc, dict):
            try:
                arrays = {k: np.asarray(v) for k, v in doc.items() if isinstance(v, list)}
                found = classify_arrays(arrays, p, "JSON")
            except (CorruptFileError, ValueError):
                raise CorruptFileError(f"JSON keys {sorted(doc)} match no modality", source=p) from None
            return found
        raise CorruptFileError("JSON document is not an object", source=p)
    return Sniffed("caption", "text", {"words": len(stripped.split())}, text=stripped)


def sniff(path: str | Path) -> Sniffed:
    """The modality of one file, decided by its content (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise EmptyInputError("file is empty", source=p)
    if head.startswith(b"\x89PNG"):
        return _image(p, "PNG")
    if head.startswith(b"\xff\xd8\xff"):
        return _image(p, "JPEG")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _image(p, "GIF")
    if head.startswith(b"BM") and p.suffix.lower() == ".bmp":
        return _image(p, "BMP")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _image(p, "WEBP")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _audio(p, "WAV")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return _video(p, "AVI")
    if head.startswith(b"fLaC"):
        return _audio(p, "FLAC")
    if head.startswith(b"OggS"):
        return _audio(p, "Ogg")
    if head.startswith(b"ID3") or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return _audio(p, "MP3")
    if head[4:8] == b"ftyp":
        return _video(p, "MP4")
    if head.startswith(b"\x1aE\xdf\xa3"):
        return _video(p, "Matroska/WebM")
    if head.startswith(b"MThd"):
        return _midi(p)
    if head.startswith(b"ply"):
        return _geometry(p, "PLY")
    if head.startswith(b"OFF"):
        return _geometry(p, "OFF")
    if head.startswith(b"PK\x03\x04"):
        return _arrays(p, npy=False)
    if head.startswith(b"\x93NUMPY"):
        return _arrays(p, npy=True)
    return _text_or_json(p)
