"""AVVP / LLP (audio-visual video parsing, YapengTian/AVVP-ECCV20): the tab-separated label files.

- Weak labels, ``AVVP_train.csv`` and the video lists ``AVVP_{val,test}_pd.csv``: header
  ``filename\\tevent_labels``, rows like ``BjCEufrlXm4_20_30\\tSpeech,Dog`` (labels comma-separated).
- Dense labels, ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv``: header
  ``filename\\tonset\\toffset\\tevent_labels``, one class a row, integer seconds, offset exclusive
  (``KSRjje7GH44_60_70\\t8\\t10\\tBlender``).

The official files hold rows with ``onset >= offset`` (``9\\t9``, ``9\\t0``) and exact duplicates; they are
read as they are, and :func:`rasterize` treats them as the official ``main_avvp.py`` does (``GT[c, on:off] = 1``
marks nothing for them; duplicates and overlaps merge). Filenames are kept whole (``<YouTube id>_<start>_<end>``;
ids themselves contain underscores).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.data.benchmarks._files import PathLike, parse_int, read_lines, write_text
from xmodal.errors import DataError

__all__ = [
    "AVVP_CLASSES",
    "EVENT_HEADER",
    "WEAK_HEADER",
    "AVVPEvent",
    "AVVPWeakLabel",
    "events_from_grid",
    "rasterize",
    "read_avvp_classes",
    "read_avvp_events",
    "read_avvp_features",
    "read_avvp_weak",
    "weak_labels_by_file",
    "write_avvp_classes",
    "write_avvp_events",
    "write_avvp_predictions",
    "write_avvp_weak",
]

# The 25 classes in the index order of main_avvp.py's ``categories``.
AVVP_CLASSES = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce", "Fire_alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken_rooster", "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter",
    "Accordion", "Lawn_mower", "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing",
    "Baby_cry_infant_cry", "Blender", "Clapping",
)
WEAK_HEADER = ("filename", "event_labels")
EVENT_HEADER = ("filename", "onset", "offset", "event_labels")
N_SEGMENTS = 10


@dataclass(frozen=True)
class AVVPWeakLabel:
    """A row of ``AVVP_train.csv`` or ``AVVP_{val,test}_pd.csv``: the clip's video-level classes."""

    filename: str
    event_labels: tuple[str, ...]


@dataclass(frozen=True)
class AVVPEvent:
    """A row of ``AVVP_eval_{audio,visual}.csv``: ``event_label`` over seconds ``onset <= t < offset``."""

    filename: str
    onset: int
    offset: int
    event_label: str


def _rows(path: PathLike, header: tuple[str, ...]) -> Iterable[tuple[str, list[str]]]:
    lines = read_lines(path)
    if not lines or tuple(lines[0].split("\t")) != header:
        got = lines[0] if lines else "an empty file"
        raise DataError(f"expected the tab-separated header {'<TAB>'.join(header)!r}, got {got!r}", f"{path}:1")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) != len(header):
            raise DataError(f"expected {len(header)} tab-separated fields ({', '.join(header)}), "
                            f"got {len(fields)}: {line!r}", where)
        if not fields[0]:
            raise DataError("empty filename", where)
        yield where, fields


def _check_label(label: str, classes: Sequence[str] | None, where: str) -> str:
    if not label or (classes is not None and label not in classes):
        raise DataError(f"unknown class {label!r} (the vocabulary has {len(classes or ())} classes)", where)
    return label


def read_avvp_weak(path: PathLike, classes: Sequence[str] | None = AVVP_CLASSES) -> list[AVVPWeakLabel]:
    """Read a weak-label file; ``classes=None`` accepts any class name."""
    out = []
    for where, (filename, labels) in _rows(path, WEAK_HEADER):
        names = tuple(_check_label(x, classes, where) for x in labels.split(",")) if labels else ()
        out.append(AVVPWeakLabel(filename, names))
    return out


def read_avvp_events(path: PathLike, classes: Sequence[str] | None = AVVP_CLASSES) -> list[AVVPEvent]:
    """Read a dense-label file (ground truth or predictions in the same layout)."""
    out = []
    for where, (filename, onset, offset, label) in _rows(path, EVENT_HEADER):
        on, off = parse_int(onset, "onset", where), parse_int(offset, "offset", where)
        if not (0 <= on <= N_SEGMENTS and 0 <= off <= N_SEGMENTS):
            raise DataError(f"onset and offset must lie in 0..{N_SEGMENTS} seconds, got {on} and {off}", where)
        out.append(AVVPEvent(filename, on, off, _check_label(label, classes, where)))
    return out


def _clean(value: str, what: str, i: int, forbidden: str = "\t\r\n") -> str:
    if not isinstance(value, str) or not value or any(c in value for c in forbidden):
        raise DataError(f"{what} {value!r} must be a non-empty string without {forbidden!r}", f"row {i}")
    return value


def write_avvp_weak(path: PathLike, rows: Iterable[AVVPWeakLabel]) -> None:
    """Write ``filename\\tevent_labels`` rows under the official header."""
    lines = ["\t".join(WEAK_HEADER)]
    for i, r in enumerate(rows):
        labels = [_clean(x, "class", i, "\t\r\n,") for x in r.event_labels]
        lines.append(f"{_clean(r.filename, 'filename', i)}\t{','.join(labels)}")
    write_text(path, "".join(line + "\n" for line in lines))


def write_avvp_events(path: PathLike, rows: Iterable[AVVPEvent]) -> None:
    """Write ``filename\\tonset\\toffset\\tevent_labels`` rows under the official header."""
    lines = ["\t".join(EVENT_HEADER)]
    for i, r in enumerate(rows):
        if not (0 <= int(r.onset) <= N_SEGMENTS and 0 <= int(r.offset) <= N_SEGMENTS):
            raise DataError(f"onset and offset must lie in 0..{N_SEGMENTS}, got {r.onset} and {r.offset}", f"row {i}")
        lines.append(f"{_clean(r.filename, 'filename', i)}\t{int(r.onset)}\t{int(r.offset)}\t"
                     f"{_clean(r.event_label, 'class', i)}")
    write_text(path, "".join(line + "\n" for line in lines))


def read_avvp_classes(path: PathLike) -> tuple[str, ...]:
    """A class vocabulary file: one class name a line, in index order (blank lines ignored)."""
    names = tuple(line.strip() for line in read_lines(path) if line.strip())
    if not names:
        raise DataError("holds no class names", path)
    if len(set(names)) != len(names):
        raise DataError("a class name appears twice", path)
    return names


def write_avvp_classes(path: PathLike, classes: Sequence[str]) -> None:
    write_text(path, "".join(_clean(c, "class", i, "\t\r\n,") + "\n" for i, c in enumerate(classes)))


def rasterize(events: Iterable[AVVPEvent], filenames: Sequence[str],
              classes: Sequence[str] = AVVP_CLASSES) -> dict[str, np.ndarray]:
    """``{filename: (n_classes, 10) int array}`` for every listed clip (all zeros when it has no row), as
    main_avvp.py's ``GT[idx, onset:offset] = 1``; rows of clips not listed are ignored."""
    index = {c: i for i, c in enumerate(classes)}
    grids = {f: np.zeros((len(classes), N_SEGMENTS), dtype=np.int64) for f in filenames}
    for e in events:
        grid = grids.get(e.filename)
        if grid is None:
            continue
        if e.event_label not in index:
            raise DataError(f"unknown class {e.event_label!r}", e.filename)
        grid[index[e.event_label], e.onset:e.offset] = 1
    return grids


def weak_labels_by_file(rows: Iterable[AVVPWeakLabel]) -> Mapping[str, tuple[str, ...]]:
    """``{filename: classes}``; a filename listed twice is a DataError."""
    out: dict[str, tuple[str, ...]] = {}
    for r in rows:
        if r.filename in out:
            raise DataError("listed twice", r.filename)
        out[r.filename] = r.event_labels
    return out


def events_from_grid(filename: str, grid: np.ndarray, classes: Sequence[str] = AVVP_CLASSES) -> list[AVVPEvent]:
    """The rows that :func:`rasterize` turns back into ``grid`` (``(n_classes, 10)`` 0/1): one row per run of
    consecutive ones, class by class, so predictions can be written in the ``AVVP_eval_*.csv`` layout."""
    g = np.asarray(grid)
    if g.shape != (len(classes), N_SEGMENTS) or not np.isin(g, (0, 1)).all():
        raise DataError(f"expected a 0/1 grid of shape {(len(classes), N_SEGMENTS)}, got {g.shape}", filename)
    rows = []
    for c, name in enumerate(classes):
        padded = np.concatenate([[0], g[c], [0]])
        edges = np.flatnonzero(np.diff(padded))
        rows += [AVVPEvent(filename, int(on), int(off), name) for on, off in zip(edges[::2], edges[1::2])]
    return rows


# Shapes of the official per-clip features: VGGish, ResNet-152 at 8 fps, R(2+1)D-18. The rows (time) and
# VGGish's width are fixed; the visual widths are the extractor's (scene builds write 64 and 128).
FEATURE_SHAPES = {"audio": (10, 128), "visual": (80, 2048), "motion": (10, 512)}


def read_avvp_features(filename: str, audio_dir: PathLike, visual_dir: PathLike,
                       motion_dir: PathLike) -> dict[str, np.ndarray]:
    """The official ``<dir>/<filename>.npy`` features of one clip as float32: ``{"audio": (10, 128), "visual":
    (80, 2048), "motion": (10, 512)}`` (the vggish, res152 and r2plus1d_18 folders; the two visual widths may
    differ, for features of another extractor); a missing file, a pickled array, another number of rows or
    another audio width is a DataError naming the file."""
    out = {}
    for name, folder in (("audio", audio_dir), ("visual", visual_dir), ("motion", motion_dir)):
        path = Path(folder) / f"{filename}.npy"
        if not path.is_file():
            raise DataError("file not found", path)
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"not a readable .npy array ({exc})", path) from exc
        rows, width = FEATURE_SHAPES[name]
        if array.ndim != 2 or array.shape[0] != rows or (name == "audio" and array.shape[1] != width):
            expected = f"({rows}, {width})" if name == "audio" else f"({rows}, width), officially ({rows}, {width})"
            raise DataError(f"expected {name} features of shape {expected}, got {array.shape}", path)
        out[name] = array.astype(np.float32, copy=False)
    return out


def write_avvp_predictions(folder: PathLike, audio: Mapping[str, np.ndarray], visual: Mapping[str, np.ndarray],
                           classes: Sequence[str] = AVVP_CLASSES) -> None:
    """Write ``folder/audio.csv`` and ``folder/visual.csv`` (the layout ``xmodal eval avvp`` reads) from
    ``{filename: (n_classes, 10) 0/1 grid}`` per modality, e.g. the output of
    :func:`xmodal.metrics.avvp.avvp_postprocess`."""
    root = Path(folder)
    for name, grids in (("audio", audio), ("visual", visual)):
        write_avvp_events(root / f"{name}.csv",
                          [row for f, grid in grids.items() for row in events_from_grid(f, grid, classes)])
