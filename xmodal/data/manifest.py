"""The on-disk format of every dataset xmodal builds or converts, and the Dataset that reads it.

A dataset is a directory::

    dataset.json     {"name", "description", "modalities": {field: modality name}, optional "sample_rate",
                      "image_size": [H, W], "num_frames", "mel": {MelSpectrogram options}, "fs", ...}
    manifest.jsonl   one sample a line: {"id", "split", field: relative path or inline text, optional "label"}

Text fields (caption, question, ...) hold their text inline; every other field holds a path relative to the
directory, decoded by its modality with :mod:`xmodal.data.io`. :func:`verify` decodes everything and reports
every bad item with its typed error; nothing is skipped silently.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from xmodal.config.loaders import loads_json, read_json, read_text
from xmodal.data import io
from xmodal.data.io._common import decoding
from xmodal.data.sample import validate_sample
from xmodal.errors import (
    ConfigError,
    CorruptFileError,
    DataError,
    EmptyInputError,
    MissingFileError,
    MissingModalityError,
    XmodalError,
)
from xmodal.modalities import ModalitySpec, get_modality

META_FILE = "dataset.json"
MANIFEST_FILE = "manifest.jsonl"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _check_meta(meta: Mapping[str, Any], source: Path) -> None:
    for key in ("name", "modalities"):
        if key not in meta:
            raise ConfigError(f"{source}: dataset metadata lacks {key!r}")
    if not isinstance(meta["modalities"], Mapping) or not meta["modalities"]:
        raise ConfigError(f"{source}: 'modalities' must map field names to modality names")
    for fld, mod in meta["modalities"].items():
        if fld in ("id", "split", "label"):
            raise ConfigError(f"{source}: field name {fld!r} is reserved")
        get_modality(mod)  # UnknownModalityError names it


def write_manifest(root: str | Path, meta: Mapping[str, Any], rows: Iterable[Mapping[str, Any]],
                   allow_outside: bool = False) -> Path:
    """Write ``dataset.json`` and ``manifest.jsonl`` under ``root`` (atomically) and return ``root``.

    Checks that ids are unique, every row has a split and every field of ``meta["modalities"]``, text is
    non-empty strings and files exist relative to ``root`` and inside it (``allow_outside`` lifts that).
    Media files must already be in place.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_meta(meta, root / META_FILE)
    rows = [dict(r) for r in rows]
    seen: set[str] = set()
    for r in rows:
        sid = str(r.get("id", ""))
        if not sid:
            raise DataError("manifest row without an 'id'", source=root / MANIFEST_FILE)
        if sid in seen:
            raise DataError(f"duplicate sample id {sid!r}", source=root / MANIFEST_FILE)
        seen.add(sid)
        if "split" not in r:
            raise DataError(f"sample {sid!r} has no 'split'", source=root / MANIFEST_FILE)
        for fld, mod in meta["modalities"].items():
            if fld not in r or r[fld] is None:
                raise MissingModalityError(f"sample {sid!r} lacks field {fld!r} ({mod})", source=f"{sid}/{fld}")
            if get_modality(mod).is_text:
                if not check_text(r[fld], f"{sid}/{fld}").strip():
                    raise EmptyInputError(f"sample {sid!r}, field {fld!r}: text is empty", source=f"{sid}/{fld}")
            else:
                path = resolve_path(root, r[fld], f"{sid}/{fld}", allow_outside)
                if not path.is_file():
                    raise MissingFileError(f"file of sample {sid!r}, field {fld!r} is missing", path)
    _atomic_write(root / META_FILE, json.dumps(dict(meta), indent=2, ensure_ascii=False) + "\n")
    _atomic_write(root / MANIFEST_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root


def read_manifest(root: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(meta, rows)`` of a dataset directory; CorruptFileError names the file and line of bad JSON."""
    root = Path(root)
    meta_path, rows_path = root / META_FILE, root / MANIFEST_FILE
    for p in (meta_path, rows_path):
        if not p.is_file():
            raise MissingFileError(f"not found; a dataset directory holds {META_FILE} and {MANIFEST_FILE}", p)
    meta = read_json(meta_path)
    if not isinstance(meta, dict):
        raise CorruptFileError(f"expected a JSON object, got a {type(meta).__name__}", source=meta_path)
    _check_meta(meta, meta_path)
    rows = []
    # Only \n (and \r\n) end a JSON Lines record; str.splitlines would also split on \x1c, U+2028, ...
    for n, line in enumerate(read_text(rows_path, "manifest").split("\n"), start=1):
        if not line.strip():
            continue
        row = loads_json(line, rows_path, line=n)
        if not isinstance(row, dict):
            raise CorruptFileError(f"line {n}: expected a JSON object per line, got a {type(row).__name__}",
                                   source=rows_path)
        rows.append(row)
    return meta, rows


def resolve_path(root: Path, value: Any, where: str, allow_outside: bool = False) -> Path:
    """The file a manifest value names, relative to ``root``. A path that leaves the dataset folder (``..``,
    an absolute path, a symlinked folder pointing out) is refused unless ``allow_outside`` is set: a manifest
    from elsewhere should not read arbitrary files."""
    if not isinstance(value, str) or not value:
        raise DataError(f"expected a relative file path (a string), got {value!r}", source=where)
    path = root / value
    if not allow_outside:
        base = root.resolve()
        target = path.resolve()
        if Path(value).is_absolute() or not target.is_relative_to(base):
            raise DataError(
                f"path {value!r} leaves the dataset folder {root}; pass allow_outside=True "
                "(--allow-outside) if the manifest is trusted",
                source=where,
            )
    return path


def check_text(value: Any, where: str) -> str:
    """A text field's value: a string. Numbers and lists are refused rather than ``str()``-ed."""
    if not isinstance(value, str):
        raise DataError(f"text must be a JSON string, got {type(value).__name__} {value!r}", source=where)
    return value


def decode_field(root: Path, meta: Mapping[str, Any], spec: ModalitySpec, value: Any, where: str = "",
                 allow_outside: bool = False) -> Any:
    """Decode one manifest value by its modality: text stays a str; files become tensors (or a Graph, or a
    mesh dict). Image ``(3, H, W)`` float in [0, 1]; waveform ``(time,)``; spectrogram log-mel
    ``(mels, frames)``; video ``(T, 3, H, W)`` float; MIDI notes ``(N, 5)``; piano roll ``(128, T)``;
    point cloud ``(N, 3)``; others from a one-array .npz. ``where`` names the sample and field in errors."""
    where = where or spec.name
    if spec.is_text:
        return check_text(value, where)
    path = resolve_path(root, value, where, allow_outside)
    name = spec.name
    if name == "image":
        size = meta.get("image_size")
        return io.load_image_tensor(path, tuple(size) if size else None)
    if name in ("waveform", "spectrogram") and path.suffix.lower() != ".npz":
        wav, sr = io.read_audio(path, meta.get("sample_rate"))
        x = torch.from_numpy(wav)
        if name == "waveform":
            return x
        return _mel(sr, json.dumps(meta.get("mel", {}), sort_keys=True))(x)
    if name == "video":
        clip = io.read_video(path, num_frames=meta.get("num_frames"), with_audio=False)
        return torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div_(255.0)
    if name == "midi_notes":
        return torch.from_numpy(io.read_midi_notes(path))
    if name == "piano_roll" and path.suffix.lower() in (".mid", ".midi"):
        return torch.from_numpy(io.read_piano_roll(path, fs=meta.get("fs", 100.0)))
    if name == "point_cloud":
        return torch.from_numpy(io.read_point_cloud(path))
    if name == "mesh":
        v, f = io.read_mesh(path)
        return {"vertices": torch.from_numpy(v), "faces": torch.from_numpy(f)}
    if name == "graph":
        return io.read_graph(path)
    return _read_npz_array(path)


@functools.lru_cache(maxsize=8)
def _mel(sample_rate: int, options_json: str) -> torch.nn.Module:
    """One log-mel module per (rate, options): building the filterbank per file would dominate decoding."""
    from xmodal.data.features import MelSpectrogram

    return MelSpectrogram(sample_rate, **{"log": True, **json.loads(options_json)})


def _read_npz_array(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise MissingFileError("no such file", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if len(z.files) != 1:
                raise CorruptFileError(f"expected one array in the .npz, found {z.files}", source=path)
            return torch.from_numpy(z[z.files[0]])
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot decode .npz: {exc}", source=path) from exc


class ManifestDataset(Dataset):
    """A torch Dataset over a manifest directory; items are sample dicts (see :mod:`xmodal.data.sample`).

    ``transforms`` maps a field to a callable applied to its decoded value. ``fields`` restricts decoding to
    some modalities (e.g. only images and captions). Paths that leave the dataset folder are refused unless
    ``allow_outside`` is set.
    """

    def __init__(self, root: str | Path, split: str | None = None,
                 transforms: Mapping[str, Callable[[Any], Any]] | None = None,
                 fields: Iterable[str] | None = None, allow_outside: bool = False) -> None:
        self.root = Path(root)
        self.allow_outside = allow_outside
        self.meta, rows = read_manifest(self.root)
        self.rows = [r for r in rows if split is None or r.get("split") == split]
        self.split = split
        mods = self.meta["modalities"]
        self.modalities: dict[str, str] = {f: mods[f] for f in (fields or mods)}
        for f in self.modalities:
            if f not in mods:
                raise ConfigError(f"{self.root / META_FILE}: no field {f!r}; fields are {sorted(mods)}")
        self.specs = {f: get_modality(m) for f, m in self.modalities.items()}
        self.transforms = dict(transforms or {})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        sid = str(row["id"])
        sample: dict[str, Any] = {"id": sid}
        for fld, spec in self.specs.items():
            if fld not in row or row[fld] is None:
                raise MissingModalityError(f"sample {sid!r} lacks field {fld!r} ({spec.name}) in the manifest",
                                           source=f"{sid}/{fld}")
            value = decode_field(self.root, self.meta, spec, row[fld], f"{sid}/{fld}", self.allow_outside)
            if fld in self.transforms:
                value = self.transforms[fld](value)
            sample[fld] = value
        if "label" in row:
            sample["label"] = row["label"]
        return validate_sample(sample, {f: s.name for f, s in self.specs.items() if f in sample})  # type: ignore[return-value]


@dataclass
class BadItem:
    """One item that failed to decode: which sample, field and file, and the typed error."""

    id: str
    field: str
    path: str
    error: str
    message: str


@dataclass
class VerifyReport:
    """Result of :func:`verify`: every sample and field checked, every failure listed."""

    root: str
    samples: int
    fields_checked: int
    bad: list[BadItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "samples": self.samples, "fields_checked": self.fields_checked,
                "bad": [vars(b) for b in self.bad]}


def verify(root: str | Path, progress: bool = False, allow_outside: bool = False) -> VerifyReport:
    """Decode every file and check every text of a dataset; list each failure with its error type.

    Duplicate ids and rows lacking a split or a field are reported as bad items too.
    """
    root = Path(root)
    meta, rows = read_manifest(root)
    specs = {f: get_modality(m) for f, m in meta["modalities"].items()}
    report = VerifyReport(str(root), len(rows), 0)
    counts = Counter(str(r.get("id")) for r in rows)
    iterator: Iterable[dict[str, Any]] = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc=f"verify {root.name}", unit="sample")
    for row in iterator:
        sid = str(row.get("id"))
        if counts[sid] > 1:
            report.bad.append(BadItem(sid, "id", "", "DataError", f"id {sid!r} appears {counts[sid]} times"))
            counts[sid] = 1  # report a duplicate once
        if "split" not in row:
            report.bad.append(BadItem(sid, "split", "", "DataError", "row has no 'split'"))
        for fld, spec in specs.items():
            report.fields_checked += 1
            value = row.get(fld)
            where = "" if spec.is_text or value is None else str(root / str(value))
            try:
                if value is None:
                    raise MissingModalityError(f"sample {sid!r} lacks field {fld!r} ({spec.name})",
                                               source=f"{sid}/{fld}")
                decoded = decode_field(root, meta, spec, value, f"{sid}/{fld}", allow_outside)
                validate_sample({"id": sid, fld: decoded}, {fld: spec.name})
            except (XmodalError, FileNotFoundError) as exc:
                report.bad.append(BadItem(sid, fld, where, type(exc).__name__, str(exc)))
    return report


def info(root: str | Path, allow_outside: bool = False) -> dict[str, Any]:
    """Statistics read from headers where possible: samples per split, labels, and per field the audio
    durations (s), image sizes, video frame counts or text lengths (words). A field whose files cannot be
    read gets an ``error`` entry naming the first bad file (``xmodal data verify`` lists them all)."""
    from PIL import Image

    root = Path(root)
    meta, rows = read_manifest(root)
    out: dict[str, Any] = {
        "name": meta["name"], "description": meta.get("description", ""), "root": str(root),
        "samples": len(rows), "splits": dict(Counter(str(r.get("split")) for r in rows)),
        "modalities": dict(meta["modalities"]), "fields": {},
    }
    labels = Counter(str(r["label"]) for r in rows if "label" in r)
    if labels:
        out["labels"] = dict(labels)
    for fld, mod in meta["modalities"].items():
        spec = get_modality(mod)
        present = [r for r in rows if r.get(fld) is not None]
        stats: dict[str, Any] = {"modality": spec.name, "present": len(present)}
        try:
            if spec.is_text:
                texts = [check_text(r[fld], f"{r.get('id')}/{fld}") for r in present]
                stats["words"] = _summary(np.array([len(t.split()) for t in texts]))
            else:
                paths = [resolve_path(root, r[fld], f"{r.get('id')}/{fld}", allow_outside) for r in present]
            if spec.name in ("waveform", "spectrogram"):
                stats["duration_s"] = _summary(np.array([io.audio_duration(p) for p in paths]))
            elif spec.name == "image":
                sizes = []
                for p in paths:
                    with decoding(p, "image header"), Image.open(io._common.existing(p)) as im:
                        sizes.append(im.size[::-1])  # (H, W); a decompression bomb raises here
                arr = np.array(sizes)
                stats["height"], stats["width"] = _summary(arr[:, 0], False), _summary(arr[:, 1], False)
            elif spec.name == "video":
                stats["frames"] = _summary(np.array([_video_frames(p) for p in paths]), False)
        except (XmodalError, OSError) as exc:
            stats["error"] = f"{type(exc).__name__}: {exc} (run `xmodal data verify`)"
        out["fields"][fld] = stats
    return out


def _summary(x: np.ndarray, total: bool = True) -> dict[str, float]:
    if len(x) == 0:
        return {}
    out = {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max())}
    if total:
        out["total"] = float(x.sum())
    return out


def _video_frames(path: Path) -> int:
    import av

    with decoding(path, "video header"), av.open(str(io._common.existing(path))) as c:
        if not c.streams.video:
            raise CorruptFileError("holds no video stream", source=path)
        return int(c.streams.video[0].frames)
