"""Flickr-SoundNet sound source localisation test set (Senocak et al. 2018): one XML file per frame.

Every ``<bbox>`` grandchild of the root is one annotator's box; as in LVS's ``test.py`` its first child is
skipped and the next four hold integer ``xmin, ymin, xmax, ymax`` in a 256 x 256 frame. Our writer names the
skipped child ``<annotator>`` and lays the file out as::

    <annotation>
      <filename>10000130166.jpg</filename>
      <bboxes>
        <bbox><annotator>1</annotator><xmin>50</xmin><ymin>60</ymin><xmax>150</xmax><ymax>200</ymax></bbox>
        ...
      </bboxes>
    </annotation>

A grandchild of the root that is not a ``<bbox>`` would make LVS fail (it appends an empty box), so the reader
rejects it with the file's name. The sample id is the XML file's name without ``.xml``.
"""

from __future__ import annotations

import numbers
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.benchmarks._files import PathLike, parse_int, write_text
from xmodal.errors import CorruptFileError, DataError, EmptyInputError

__all__ = [
    "FRAME_SIZE",
    "FlickrAnnotation",
    "FlickrBox",
    "read_flickr_dir",
    "read_flickr_xml",
    "write_flickr_dir",
    "write_flickr_xml",
]

FRAME_SIZE = 256  # the annotation frame's side, in pixels


@dataclass(frozen=True)
class FlickrBox:
    """One annotator's box in 256 x 256 pixel coordinates; ``annotator`` is the text of the skipped child."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int
    annotator: str = ""


@dataclass(frozen=True)
class FlickrAnnotation:
    file_id: str
    boxes: tuple[FlickrBox, ...]


def read_flickr_xml(path: PathLike) -> FlickrAnnotation:
    """Read one annotation file as LVS does (every root grandchild a ``<bbox>``; first child skipped)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", p)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as exc:
        raise CorruptFileError(f"not well-formed XML ({exc})", p) from exc
    boxes: list[FlickrBox] = []
    for child in root:
        for element in child:
            where = f"{p}: <{child.tag}><{element.tag}> #{len(boxes) + 1}"
            if element.tag != "bbox":
                raise DataError(f"expected only <bbox> elements under <{child.tag}>, got <{element.tag}>", p)
            parts = list(element)
            if len(parts) < 5:
                raise DataError(f"a <bbox> needs a label child then xmin, ymin, xmax, ymax; got {len(parts)} "
                                "children", where)
            xmin, ymin, xmax, ymax = (parse_int(c.text or "", f"<{c.tag}>", where) for c in parts[1:5])
            boxes.append(FlickrBox(xmin, ymin, xmax, ymax, annotator=(parts[0].text or "").strip()))
    if not boxes:
        raise EmptyInputError("holds no <bbox> element", p)
    return FlickrAnnotation(p.stem, tuple(boxes))


def write_flickr_xml(path: PathLike, record: FlickrAnnotation) -> None:
    """Write one annotation file; ``path`` should be ``<dir>/<file_id>.xml``."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{record.file_id}.jpg"
    holder = ET.SubElement(root, "bboxes")
    if not record.boxes:
        raise DataError("an annotation needs at least one box", record.file_id)
    for b in record.boxes:
        box = ET.SubElement(holder, "bbox")
        ET.SubElement(box, "annotator").text = str(b.annotator)
        for name in ("xmin", "ymin", "xmax", "ymax"):
            value = getattr(b, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise DataError(f"{name} must be an integer pixel coordinate, got {value!r}", record.file_id)
            ET.SubElement(box, name).text = str(int(value))
    ET.indent(root)
    write_text(path, '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n")


def read_flickr_dir(folder: PathLike) -> dict[str, FlickrAnnotation]:
    """``{file_id: annotation}`` for every ``*.xml`` directly in ``folder``."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("is not a directory", root)
    files = sorted(root.glob("*.xml"))
    if not files:
        raise EmptyInputError("holds no .xml annotation file", root)
    return {f.stem: read_flickr_xml(f) for f in files}


def write_flickr_dir(folder: PathLike, records: Iterable[FlickrAnnotation]) -> None:
    root = Path(folder)
    for r in records:
        if not r.file_id or "/" in r.file_id or r.file_id.startswith("."):
            raise DataError(f"file id {r.file_id!r} cannot name a file", root)
        write_flickr_xml(root / f"{r.file_id}.xml", r)
