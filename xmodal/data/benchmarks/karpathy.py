"""Karpathy splits of COCO and Flickr30k (``dataset_coco.json``, ``dataset_flickr30k.json``, from Karpathy's
neuraltalk2 release): ``{"images": [{filename, imgid, split, sentids, sentences: [{tokens, raw, imgid, sentid}],
filepath?, cocoid?}], "dataset": "coco" | "flickr30k" | "flickr8k"}``; ``split`` is train, val, test or restval."""

from __future__ import annotations

from dataclasses import dataclass, field

from xmodal.data.benchmarks._vl_files import PathLike, dump_json, existing, get, load_json
from xmodal.errors import DataError

SPLITS = ("train", "val", "test", "restval")


@dataclass(frozen=True)
class KarpathySentence:
    sentid: int
    raw: str
    tokens: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KarpathyImage:
    imgid: int
    filename: str
    split: str
    sentences: list[KarpathySentence] = field(default_factory=list)
    filepath: str | None = None  # COCO only: "train2014" or "val2014"
    cocoid: int | None = None  # COCO only


@dataclass(frozen=True)
class KarpathyDataset:
    dataset: str
    images: list[KarpathyImage]

    def split(self, name: str) -> list[KarpathyImage]:
        """The images of split ``name`` in file order (the order the retrieval protocols use)."""
        if name not in SPLITS:
            raise DataError(f"no such split {name!r}; choose one of {', '.join(SPLITS)}", source="split")
        return [im for im in self.images if im.split == name]


def read_karpathy(path: PathLike) -> KarpathyDataset:
    p = existing(path)
    data = load_json(p)
    images = []
    for i, im in enumerate(get(data, "images", list, "top level", p)):
        w = f"images[{i}]"
        imgid = get(im, "imgid", int, w, p)
        sentences = []
        for j, s in enumerate(get(im, "sentences", list, w, p)):
            ws = f"{w} sentences[{j}]"
            tokens = get(s, "tokens", list, ws, p)
            if not all(isinstance(t, str) for t in tokens):
                raise DataError(f"{ws}: tokens must be strings", source=p)
            sentences.append(KarpathySentence(get(s, "sentid", int, ws, p), get(s, "raw", str, ws, p), tokens))
        split = get(im, "split", str, w, p)
        if split not in SPLITS:
            raise DataError(f"{w}: unknown split {split!r}", source=p)
        sentids = get(im, "sentids", list, w, p)
        if sentids != [s.sentid for s in sentences]:
            raise DataError(f"{w}: sentids {sentids} differ from the sentences' ids", source=p)
        cocoid = im.get("cocoid")
        images.append(KarpathyImage(imgid, get(im, "filename", str, w, p), split, sentences,
                                    im.get("filepath"), None if cocoid is None else int(cocoid)))
    return KarpathyDataset(str(data.get("dataset", "")), images)


def write_karpathy(path: PathLike, data: KarpathyDataset) -> None:
    """The JSON with the release's keys; ``filepath`` and ``cocoid`` only where the image has them (COCO)."""
    images = []
    for im in data.images:
        rec: dict = {}
        if im.filepath is not None:
            rec["filepath"] = im.filepath
        rec["sentids"] = [s.sentid for s in im.sentences]
        rec["filename"] = im.filename
        rec["imgid"] = im.imgid
        rec["split"] = im.split
        rec["sentences"] = [{"tokens": list(s.tokens), "raw": s.raw, "imgid": im.imgid, "sentid": s.sentid}
                            for s in im.sentences]
        if im.cocoid is not None:
            rec["cocoid"] = im.cocoid
        images.append(rec)
    dump_json(path, {"images": images, "dataset": data.dataset})
