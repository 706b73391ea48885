"""VGG-SS (sound source localisation boxes on VGGSound, hche11/Localizing-Visual-Sounds-the-Hard-Way).

``metadata/vggss.json`` is one JSON list of ``{"file": "zpWuikVorYg_000032", "class": "elk bugling",
"bbox": [[0.403125, 0.253125, 0.6, 0.75]]}``: normalised ``xmin, ymin, xmax, ymax`` boxes, several per clip.
The real file holds values LVS copes with by clipping at 0 (``-2.88e16``), zero-width boxes and integers next to
floats (``0``, ``1``); all are read as they are and written back unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from xmodal.data.benchmarks._files import PathLike, read_json, read_lines, write_text
from xmodal.errors import DataError

__all__ = ["VGGSSAnnotation", "read_test_list", "read_vggss", "vggss_by_file", "write_test_list", "write_vggss"]

Number = int | float


@dataclass(frozen=True)
class VGGSSAnnotation:
    """One entry of ``vggss.json``; ``class_name`` is its ``class`` key."""

    file: str
    class_name: str
    bboxes: tuple[tuple[Number, Number, Number, Number], ...]


def _box(value: object, where: str) -> tuple[Number, Number, Number, Number]:
    if not isinstance(value, list) or len(value) != 4:
        raise DataError(f"a box must be a list of 4 numbers (xmin, ymin, xmax, ymax), got {value!r}", where)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"box coordinate {v!r} is not a finite number", where)
    return tuple(value)


def read_vggss(path: PathLike) -> list[VGGSSAnnotation]:
    """Read ``vggss.json``; errors name the entry (``path[index]``) at fault."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError("expected a JSON list of {file, class, bbox} objects", path)
    out = []
    for i, entry in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict) or not {"file", "class", "bbox"} <= entry.keys():
            raise DataError("expected an object with the keys file, class and bbox", where)
        file, name, boxes = entry["file"], entry["class"], entry["bbox"]
        if not isinstance(file, str) or not file or not isinstance(name, str):
            raise DataError("file must be a non-empty string and class a string", where)
        if not isinstance(boxes, list):
            raise DataError("bbox must be a list of boxes", where)
        out.append(VGGSSAnnotation(file, name, tuple(_box(b, where) for b in boxes)))
    return out


def write_vggss(path: PathLike, records: Iterable[VGGSSAnnotation]) -> None:
    """Write the official single-line JSON list, keys in the order file, class, bbox."""
    entries = []
    for i, r in enumerate(records):
        where = f"record {i}"
        if not isinstance(r.file, str) or not r.file:
            raise DataError("file must be a non-empty string", where)
        entries.append({"file": r.file, "class": r.class_name, "bbox": [list(_box(list(b), where)) for b in r.bboxes]})
    write_text(path, json.dumps(entries))


def vggss_by_file(records: Sequence[VGGSSAnnotation], source: PathLike | None = None) -> dict[str, VGGSSAnnotation]:
    """``{file: record}``; a file id given twice is a DataError."""
    out: dict[str, VGGSSAnnotation] = {}
    for r in records:
        if r.file in out:
            raise DataError(f"file {r.file!r} appears twice", source)
        out[r.file] = r
    return out


def read_test_list(path: PathLike) -> list[str]:
    """Sample ids of an LVS test list (``metadata/vggss_test.csv``: one id a line; ``flickr_test.csv``:
    ``id,number`` rows, no header): the first comma-separated column, as LVS's ``csv.reader`` loop takes it."""
    ids = [line.split(",")[0].strip() for line in read_lines(path) if line.strip()]
    if not ids:
        raise DataError("holds no sample id", path)
    return ids


def write_test_list(path: PathLike, ids: Iterable[str]) -> None:
    """One id a line, no header (the layout of ``vggss_test.csv``)."""
    rows = []
    for i in ids:
        if not isinstance(i, str) or not i or any(c in i for c in ",\r\n"):
            raise DataError(f"sample id {i!r} must be a non-empty string without commas or line breaks", path)
        rows.append(i + "\n")
    write_text(path, "".join(rows))
