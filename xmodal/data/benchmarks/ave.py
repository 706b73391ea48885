"""AVE (audio-visual event localisation, YapengTian/AVE-ECCV18): ``Annotations.txt`` and the split lists.

Each line is ``Category&VideoID&Quality&StartTime&EndTime``, e.g. ``Church bell&MH3m4AwEcRY&good&6&8``: one
event over the 1-s segments ``StartTime <= t < EndTime`` of a 10-s clip, background elsewhere. The copy in the
official repository has no header line, the distributed dataset's files start with
``Category&VideoID&Quality&StartTime&EndTime``; both are read. Class names hold spaces, commas and parentheses
(``Baby cry, infant cry``) and are kept exactly. ``0&0`` is a clip with no event (all background; the real
file has one). The full ``Annotations.txt`` repeats a VideoID for different events (45 times); the split files
do not, and ``read_ave(..., unique=True)`` enforces that.

The optional precomputed features and labels are HDF5 files whose rows follow the lines of Annotations.txt
(dataset ``avadataset``: ``audio_feature.h5`` (4143, 10, 128), ``visual_feature.h5`` (4143, 10, 7, 7, 512),
``labels.h5`` (4143, 10, 29) one-hot, ``labels_closs.h5`` (4143, 10) event masks), with the splits as row
indices (dataset ``order``: ``train_order.h5`` and ``val_order.h5``/``test_order.h5``, 402 rows each).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.data.benchmarks._files import PathLike, parse_int, read_lines, write_text
from xmodal.errors import CorruptFileError, DataError, require_module

__all__ = [
    "AVE_CATEGORIES",
    "AVE_CLASSES",
    "AVE_HEADER",
    "BACKGROUND",
    "N_SEGMENTS",
    "AVEAnnotation",
    "ave_one_hot",
    "ave_segment_labels",
    "read_ave",
    "read_ave_features",
    "read_ave_order",
    "write_ave",
]

AVE_HEADER = "Category&VideoID&Quality&StartTime&EndTime"
BACKGROUND = "background"
N_SEGMENTS = 10

# The 28 event classes, spelled as in Annotations.txt, in the column order of the official label tensors
# (``mil_labels.h5`` columns 0..27 follow the classes' first appearance in Annotations.txt); background is
# column 28 of the 29-way labels.
AVE_CATEGORIES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane", "Race car, auto racing",
    "Female speech, woman speaking", "Helicopter", "Violin, fiddle", "Flute", "Ukulele", "Frying (food)", "Truck",
    "Shofar", "Motorcycle", "Acoustic guitar", "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry",
    "Bus", "Chainsaw", "Cat", "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)
AVE_CLASSES = (*AVE_CATEGORIES, BACKGROUND)


@dataclass(frozen=True)
class AVEAnnotation:
    """One line of an AVE annotation file. ``start``/``end`` are whole seconds, end-exclusive."""

    category: str
    video_id: str
    quality: str
    start: int
    end: int

    def segment_labels(self) -> list[str]:
        """The label of each of the 10 one-second segments: the category or ``background``."""
        return [self.category if self.start <= t < self.end else BACKGROUND for t in range(N_SEGMENTS)]


def _parse_line(line: str, where: str) -> AVEAnnotation:
    fields = line.split("&")
    if len(fields) != 5:
        raise DataError(f"expected 5 '&'-separated fields ({AVE_HEADER}), got {len(fields)}: {line!r}", where)
    category, video_id, quality = fields[0], fields[1], fields[2]
    if not category or not video_id:
        raise DataError(f"empty Category or VideoID: {line!r}", where)
    start = parse_int(fields[3], "StartTime", where)
    end = parse_int(fields[4], "EndTime", where)
    if not (0 <= start <= end <= N_SEGMENTS):
        raise DataError(f"expected 0 <= StartTime <= EndTime <= {N_SEGMENTS}, got {start} and {end}", where)
    return AVEAnnotation(category, video_id, quality, start, end)


def read_ave(path: PathLike, unique: bool = False) -> list[AVEAnnotation]:
    """Read ``Annotations.txt`` / ``trainSet.txt`` / ``valSet.txt`` / ``testSet.txt`` (header line optional,
    blank lines ignored). ``unique=True`` makes a repeated VideoID a DataError naming both lines."""
    records: list[AVEAnnotation] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        if not records and line.strip() == AVE_HEADER:
            continue
        where = f"{path}:{number}"
        record = _parse_line(line, where)
        if unique and record.video_id in first_line:
            raise DataError(f"VideoID {record.video_id!r} repeats line {first_line[record.video_id]}; a split "
                            "file lists each clip once", where)
        first_line.setdefault(record.video_id, number)
        records.append(record)
    return records


def write_ave(path: PathLike, records: Iterable[AVEAnnotation], header: bool = True) -> None:
    """Write records in the official five-field layout, with the dataset's header line unless ``header=False``
    (the layout of the repository's ``data/Annotations.txt``)."""
    lines = [AVE_HEADER] if header else []
    for i, r in enumerate(records):
        for name in ("category", "video_id", "quality"):
            value = getattr(r, name)
            if not isinstance(value, str) or not value and name != "quality" or any(c in value for c in "&\r\n"):
                raise DataError(f"{name} {value!r} must be a non-empty string without '&' or line breaks",
                                f"record {i}")
        if not (0 <= r.start <= r.end <= N_SEGMENTS):
            raise DataError(f"expected 0 <= start <= end <= {N_SEGMENTS}, got {r.start} and {r.end}", f"record {i}")
        lines.append(f"{r.category}&{r.video_id}&{r.quality}&{int(r.start)}&{int(r.end)}")
    write_text(path, "".join(line + "\n" for line in lines))


def ave_segment_labels(records: Sequence[AVEAnnotation], source: PathLike | None = None) -> dict[str, list[str]]:
    """``{VideoID: 10 segment labels}``; a VideoID given twice is a DataError (events of one clip cannot be
    merged into single-label segments)."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r.video_id in out:
            raise DataError(f"VideoID {r.video_id!r} appears more than once", source)
        out[r.video_id] = r.segment_labels()
    return out


def ave_one_hot(records: Sequence[AVEAnnotation], classes: Sequence[str] = AVE_CLASSES) -> np.ndarray:
    """``(len(records), 10, len(classes))`` float32 one-hot segment labels in the layout of the official
    ``labels.h5`` (background is the class named ``background``)."""
    index = {c: i for i, c in enumerate(classes)}
    if BACKGROUND not in index:
        raise DataError(f"the class list must contain {BACKGROUND!r}")
    out = np.zeros((len(records), N_SEGMENTS, len(classes)), dtype=np.float32)
    for k, r in enumerate(records):
        if r.category not in index:
            raise DataError(f"category {r.category!r} is not in the class list", r.video_id)
        for t, label in enumerate(r.segment_labels()):
            out[k, t, index[label]] = 1
    return out


def _h5_dataset(path: PathLike, key: str) -> np.ndarray:
    h5py = require_module("h5py", package="h5py")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise DataError(f"has no dataset {key!r} (it holds {sorted(f.keys())})", path)
            return f[key][()]
    except OSError as exc:
        raise (DataError("file not found", path) if not Path(path).is_file()
               else CorruptFileError(f"not a readable HDF5 file ({exc})", path)) from exc


def read_ave_features(path: PathLike, key: str = "avadataset") -> np.ndarray:
    """An official AVE HDF5 array (features or labels, one row per line of Annotations.txt)."""
    return _h5_dataset(path, key)


def read_ave_order(path: PathLike) -> np.ndarray:
    """The row indices of a split (``train_order.h5`` etc., dataset ``order``) as int64."""
    order = np.asarray(_h5_dataset(path, "order"))
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise DataError(f"expected a 1-D integer 'order' dataset, got {order.dtype} {order.shape}", path)
    return order.astype(np.int64)
