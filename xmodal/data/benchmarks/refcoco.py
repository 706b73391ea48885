"""RefCOCO, RefCOCO+ and RefCOCOg as distributed with the ``refer`` toolkit (lichengunc/refer).

``refs(unc).p`` / ``refs(umd).p`` is a pickled list of referring records with the keys ``ref_id, ann_id,
category_id, image_id, file_name, split, sent_ids, sentences`` (each sentence ``raw, sent, sent_id, tokens``);
``instances.json`` is COCO style (``images``, ``annotations`` with ``bbox`` = [x, y, w, h], ``categories``).

The pickle is read with an unpickler that refuses every global, so only plain containers (dict, list, str,
numbers) load; the files were written by Python 2 (protocol 0 or 2) and load unchanged. The refer toolkit's own
``REFER`` class reads what :func:`write_refs` and :func:`write_instances` write (checked on 200 refs in both
protocols: the same split selections, boxes and sentences).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.data.benchmarks._vl_files import PathLike, dump_json, existing, get, load_json, number_list
from xmodal.errors import CorruptFileError, DataError

SPLIT_NAMES = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")


@dataclass(frozen=True)
class RefSentence:
    sent_id: int
    sent: str  # lower-cased, tokenised text as the toolkit ships it
    raw: str
    tokens: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RefRecord:
    """One referred object with its expressions; ``split`` is e.g. ``testA`` or ``val``."""

    ref_id: int
    ann_id: int
    image_id: int
    category_id: int
    file_name: str
    split: str
    sentences: list[RefSentence] = field(default_factory=list)

    @property
    def sent_ids(self) -> list[int]:
        return [s.sent_id for s in self.sentences]


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class CocoAnnotation:
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]  # x, y, w, h in pixels
    area: float
    iscrowd: int = 0
    segmentation: list = field(default_factory=list)  # polygons [[x1, y1, x2, y2, ...], ...] or RLE dict


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    supercategory: str = ""


@dataclass(frozen=True)
class CocoInstances:
    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]

    def annotation(self, ann_id: int) -> CocoAnnotation:
        for ann in self.annotations:
            if ann.id == ann_id:
                return ann
        raise KeyError(ann_id)


class _PlainUnpickler(pickle.Unpickler):
    """Loads only what needs no global: dict, list, tuple, str, bytes, int, float, bool, None."""

    def __init__(self, data: bytes, source: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise CorruptFileError(f"refuses to load the global {module}.{name}: only plain containers are allowed",
                               source=self.source)


def read_refs(path: PathLike) -> list[RefRecord]:
    """The referring records of ``refs(<splitBy>).p``, in file order."""
    p = existing(path)
    try:
        data = _PlainUnpickler(p.read_bytes(), p).load()
    except (DataError, FileNotFoundError):
        raise
    except Exception as exc:  # pickle raises UnpicklingError, EOFError, UnicodeDecodeError, ValueError...
        raise CorruptFileError(f"cannot unpickle the refs: {type(exc).__name__}: {exc}", source=p) from exc
    if not isinstance(data, list):
        raise DataError(f"expected a list of refs, got {type(data).__name__}", source=p)
    return [_ref(rec, f"ref #{i}", p) for i, rec in enumerate(data)]


def _ref(rec: Any, where: str, p: Path) -> RefRecord:
    sentences = []
    for j, s in enumerate(get(rec, "sentences", list, where, p)):
        w = f"{where} sentence #{j}"
        tokens = get(s, "tokens", list, w, p)
        if not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{w}: field 'tokens' must be a list of strings", source=p)
        sentences.append(RefSentence(get(s, "sent_id", int, w, p), get(s, "sent", str, w, p),
                                     get(s, "raw", str, w, p), list(tokens)))
    split = get(rec, "split", str, where, p)
    if split not in SPLIT_NAMES:
        raise DataError(f"{where}: unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}", source=p)
    ref = RefRecord(get(rec, "ref_id", int, where, p), get(rec, "ann_id", int, where, p),
                    get(rec, "image_id", int, where, p), get(rec, "category_id", int, where, p),
                    get(rec, "file_name", str, where, p), split, sentences)
    sent_ids = get(rec, "sent_ids", list, where, p)
    if list(sent_ids) != ref.sent_ids:
        raise DataError(f"{where}: sent_ids {sent_ids} differ from the sentences' ids {ref.sent_ids}", source=p)
    return ref


def write_refs(path: PathLike, refs: list[RefRecord], protocol: int = 2) -> None:
    """Pickle ``refs`` with the ``refer`` loader's record keys (protocol 2 by default, 0 on request)."""
    if protocol not in (0, 2):
        raise ValueError(f"protocol must be 0 or 2 (what the refer loader reads), got {protocol}")
    records = [
        {
            "sent_ids": r.sent_ids,
            "file_name": r.file_name,
            "ann_id": r.ann_id,
            "ref_id": r.ref_id,
            "image_id": r.image_id,
            "split": r.split,
            "sentences": [{"tokens": list(s.tokens), "raw": s.raw, "sent_id": s.sent_id, "sent": s.sent}
                          for s in r.sentences],
            "category_id": r.category_id,
        }
        for r in refs
    ]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(pickle.dumps(records, protocol=protocol))


def select_split(refs: list[RefRecord], split: str) -> list[RefRecord]:
    """The refs of ``split`` as ``REFER.getRefIds(split=...)`` selects them: ``testA``/``testB``/``testC`` keep
    refs whose split contains that letter (so ``testAB`` counts for both), ``test`` every ``test*`` split,
    ``train``/``val`` and ``testAB``/``testBC``/``testAC`` the exact name."""
    if split in ("testA", "testB", "testC"):
        return [r for r in refs if split[-1] in r.split]
    if split == "test":
        return [r for r in refs if "test" in r.split]
    if split in ("train", "val", "testAB", "testBC", "testAC"):
        return [r for r in refs if r.split == split]
    raise DataError(f"no such split {split!r}; choose one of {', '.join(SPLIT_NAMES)}", source="split")


def read_instances(path: PathLike) -> CocoInstances:
    """COCO ``instances.json``: images, annotations (``bbox`` [x, y, w, h]) and categories."""
    p = existing(path)
    data = load_json(p)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object with images, annotations and categories", source=p)
    images = [CocoImage(get(im, "id", int, f"images[{i}]", p), get(im, "file_name", str, f"images[{i}]", p),
                        get(im, "width", int, f"images[{i}]", p), get(im, "height", int, f"images[{i}]", p))
              for i, im in enumerate(get(data, "images", list, "top level", p))]
    annotations = []
    for i, a in enumerate(get(data, "annotations", list, "top level", p)):
        w = f"annotations[{i}]"
        bbox = number_list(get(a, "bbox", list, w, p), 4, "bbox", w, p)
        annotations.append(CocoAnnotation(
            get(a, "id", int, w, p), get(a, "image_id", int, w, p), get(a, "category_id", int, w, p),
            (bbox[0], bbox[1], bbox[2], bbox[3]), a.get("area", bbox[2] * bbox[3]), int(a.get("iscrowd", 0)),
            a.get("segmentation", [])))
    categories = [CocoCategory(get(c, "id", int, f"categories[{i}]", p), get(c, "name", str, f"categories[{i}]", p),
                               str(c.get("supercategory", "")))
                  for i, c in enumerate(get(data, "categories", list, "top level", p))]
    return CocoInstances(images, annotations, categories)


def write_instances(path: PathLike, instances: CocoInstances) -> None:
    """COCO ``instances.json`` with the keys the ``refer`` loader and pycocotools read."""
    dump_json(path, {
        "info": {"description": "written by xmodal"},
        "licenses": [],
        "images": [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                   for im in instances.images],
        "annotations": [{"id": a.id, "image_id": a.image_id, "category_id": a.category_id, "bbox": list(a.bbox),
                         "area": a.area, "iscrowd": a.iscrowd, "segmentation": a.segmentation}
                        for a in instances.annotations],
        "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory}
                       for c in instances.categories],
    })
