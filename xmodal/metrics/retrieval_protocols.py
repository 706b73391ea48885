"""The benchmark protocols of cross-modal retrieval: which captions and items a similarity matrix holds, in
which order, and how the two directions are scored.

The matrix is (captions, items) in the protocol's order (its transpose is accepted when the shape says so):
- ``coco-5k``: the 5,000 ``test`` images of Karpathy's ``dataset_coco.json`` in file order, each with its first
  five sentences (the 25,000-caption protocol of VSE++); ``coco-1k``: the same matrix scored on five folds of
  1,000 images and averaged, as VSE++ ``evalrank(fold5=True)``; ``flickr``: the ``test`` images of
  ``dataset_flickr30k.json``, five sentences each.
- ``msrvtt-1ka``: the rows of ``MSRVTT_JSFUSION_test.csv``, sentence i describing video i.
- ``clotho``: the files of a Clotho captions CSV in order, captions 1-5 each; ``audiocaps``: the captions of an
  AudioCaps CSV in file order, the clips (youtube_id, start_time) in first-seen order.

Clotho's text-to-audio direction also reports ``t2a_mAP@10`` (DCASE 2022 task 6b): with one relevant file per
caption, the mean of ``1 / rank`` over captions ranked within the top 10, 0 otherwise.

MedR is VSE++'s ``np.floor(np.median(ranks)) + 1`` for the image and audio protocols (VSE++ and the audio-text
retrieval code built on it) and CLIP4Clip's ``np.median(ranks) + 1`` for MSR-VTT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.errors import DataError, ShapeError
from xmodal.metrics.retrieval import Ties, fold_average, ranks_any_positive, text_item_retrieval

PROTOCOLS = ("coco-5k", "coco-1k", "flickr", "msrvtt-1ka", "clotho", "audiocaps")
DIRECTIONS = {"coco-5k": ("t2i", "i2t"), "coco-1k": ("t2i", "i2t"), "flickr": ("t2i", "i2t"),
              "msrvtt-1ka": ("t2v", "v2t"), "clotho": ("t2a", "a2t"), "audiocaps": ("t2a", "a2t")}
FLOOR_MEDIAN = {"coco-5k": True, "coco-1k": True, "flickr": True, "msrvtt-1ka": False, "clotho": True,
                "audiocaps": True}
KARPATHY_CAPTIONS_PER_IMAGE = 5
COCO_1K_FOLD = 1000


@dataclass(frozen=True)
class RetrievalLayout:
    protocol: str
    caption_item: list[int]  # the item each caption (matrix row) describes
    n_items: int


def guess_protocol(path: Path) -> str:
    """The protocol a file's layout implies: Karpathy JSON (by its ``dataset``), or a CSV by its header."""
    from xmodal.data.benchmarks._vl_files import load_json, read_text

    if path.suffix == ".json":
        data = load_json(path)
        name = data.get("dataset") if isinstance(data, dict) else None
        if name == "coco":
            return "coco-5k"
        if name in ("flickr30k", "flickr8k"):
            return "flickr"
        raise DataError("cannot tell the protocol from a JSON without 'dataset': pass --protocol", source=path)
    header = read_text(path).split("\n", 1)[0].strip().lstrip("\ufeff")
    if header.startswith("key,vid_key,video_id,sentence"):
        return "msrvtt-1ka"
    if header.startswith("file_name,caption_1"):
        return "clotho"
    if header.startswith("audiocap_id,youtube_id,start_time,caption"):
        return "audiocaps"
    raise DataError(f"cannot tell the retrieval protocol from the header {header!r}: pass --protocol", source=path)


def read_layout(path: Path, protocol: str) -> RetrievalLayout:
    """The caption-to-item assignment of ``protocol`` read from its annotation file."""
    if protocol in ("coco-5k", "coco-1k", "flickr"):
        from xmodal.data.benchmarks.karpathy import read_karpathy

        images = read_karpathy(path).split("test")
        caption_item = []
        for i, im in enumerate(images):
            if not im.sentences:
                raise DataError(f"test image {im.filename} has no sentences", source=path)
            caption_item += [i] * min(len(im.sentences), KARPATHY_CAPTIONS_PER_IMAGE)
        return RetrievalLayout(protocol, caption_item, len(images))
    if protocol == "msrvtt-1ka":
        from xmodal.data.benchmarks.msrvtt import read_msrvtt_1ka

        pairs = read_msrvtt_1ka(path)
        return RetrievalLayout(protocol, list(range(len(pairs))), len(pairs))
    if protocol == "clotho":
        from xmodal.data.benchmarks.clotho import read_clotho

        clips = read_clotho(path)
        return RetrievalLayout(protocol, [i for i, c in enumerate(clips) for _ in c.captions], len(clips))
    if protocol == "audiocaps":
        from xmodal.data.benchmarks.audiocaps import read_audiocaps

        index: dict[tuple[str, int], int] = {}
        caption_item = [index.setdefault(c.clip, len(index)) for c in read_audiocaps(path)]
        return RetrievalLayout(protocol, caption_item, len(index))
    raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}", source="--protocol")


def evaluate_protocol(sim: np.ndarray, layout: RetrievalLayout, ties: Ties = "pessimistic") -> dict[str, float]:
    """R@1/5/10, MedR and MeanR in both directions under ``layout``'s protocol."""
    n_caps, n_items = len(layout.caption_item), layout.n_items
    if sim.ndim == 2 and sim.shape == (n_items, n_caps) and n_items != n_caps:
        sim = sim.T
    if sim.shape != (n_caps, n_items):
        raise ShapeError(f"the {layout.protocol} protocol needs a ({n_caps} captions, {n_items} items) similarity "
                         f"matrix, got {sim.shape}", "similarity")
    directions = DIRECTIONS[layout.protocol]
    if layout.protocol != "coco-1k":
        out = text_item_retrieval(sim, layout.caption_item, directions, ties,
                                  floor_median=FLOOR_MEDIAN[layout.protocol])
        if layout.protocol == "clotho":
            ranks = ranks_any_positive(sim, [[i] for i in layout.caption_item], ties)  # 0-based
            out["t2a_mAP@10"] = float(100.0 * np.mean(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0)))
        return out
    if n_items % COCO_1K_FOLD:
        raise ShapeError(f"coco-1k splits the gallery into folds of {COCO_1K_FOLD} images; {n_items} is not a "
                         "multiple", "similarity")
    caption_item = np.asarray(layout.caption_item)
    folds = []
    for lo in range(0, n_items, COCO_1K_FOLD):
        rows = np.nonzero((caption_item >= lo) & (caption_item < lo + COCO_1K_FOLD))[0]
        block = sim[rows][:, lo: lo + COCO_1K_FOLD]
        folds.append(text_item_retrieval(block, list(caption_item[rows] - lo), directions, ties, floor_median=True))
    return fold_average(folds)
