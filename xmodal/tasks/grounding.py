"""Visual grounding (referring expression comprehension) on RefCOCO-format data: candidate ranking
(MAttNet-style), TransVG-style box regression, or weakly supervised heatmaps scored by the pointing game.

Data: the official files as the ``refer`` toolkit distributes them, ``refs(unc).p`` and ``instances.json``
(read by :mod:`xmodal.data.benchmarks.refcoco`, the same reader users point at RefCOCO), with the images they
name. ``data.build`` (builder options, e.g. ``{n: 400, seed: 0}``) makes ``refcoco-scenes`` write them into
``data.root`` (null: a folder of the data root named by the options) first when they are missing. Every sentence of a ref of the training split is a training sample;
evaluation uses the sentences of ``data.eval_split`` (``val``, ``testA``, ``testB``), as the toolkit selects them.

Features, decoded once and kept in the :mod:`xmodal.transforms` cache (keyed by the files' bytes): images as
``(3, H, W)`` uint8; the text tower is the frozen pretrained MiniLM, its per-token hidden states
(:func:`xmodal.tasks.fields.token_features`). A 2-D CNN trained end to end gives the visual feature map. Models
(``model.kind``):

- ``ranking`` (the default): the image's annotated boxes are the candidates, as in MAttNet's setting with
  ground-truth COCO boxes; :class:`xmodal.nn.vl.CandidateRanker` scores each (RoI-aligned CNN features, its box,
  its offsets to the other candidates) against the expression, trained with softmax cross-entropy over the
  image's candidates; the prediction is the best candidate's box.
- ``transvg``: :class:`xmodal.nn.vl.TransVG` fuses the map's tokens with the text tokens and a [REG] token that
  regresses the box (normalised cx, cy, w, h), trained with L1 + GIoU (:func:`xmodal.nn.vl.box_regression_loss`).
- ``weakly_supervised``: trained from image-expression pairs alone, no boxes; see
  :mod:`xmodal.tasks.grounding_weak` (pointing game, heatmap predictions).

Evaluation: Acc@IoU>=0.5 with MAttNet's inclusive-pixel IoU (:func:`xmodal.metrics.grounding.rec_accuracy`), in
percent. Baselines on the same sentences: ``chance`` (the expected accuracy of picking one of the image's
annotated objects uniformly), ``largest_object``, ``centre_box`` (the training boxes' mean size at the image
centre), ``majority`` (the training boxes' mean box) and ``language_only`` (a least-squares regression from the
mean MiniLM token feature to the box, fitted on training sentences). Predictions: ``{"<sent_id>": [x, y, w, h]}``
in COCO pixels, the file ``xmodal eval grounding`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError, DataError
from xmodal.tasks import fields as xfields
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle

if TYPE_CHECKING:  # imported where the model is built
    from xmodal.nn.encoders.cnn import CNN2d

PRIMARY = "accuracy"


@dataclass
class DataConfig:
    root: str | None = None  # the folder of refs and instances; null: the data root's build of data.build
    refs: str = "refs(unc).p"
    instances: str = "instances.json"
    images: str = "images"  # folder of the COCO file names
    build: dict[str, Any] | None = None  # refcoco-scenes options; build into root when the files are missing
    train_split: str = "train"
    eval_split: str = "val"
    max_tokens: int = 16  # word pieces per expression (MiniLM tokenizer, [CLS] and [SEP] included)
    cache: str | None = None  # transform cache directory; null: $XMODAL_CACHE/features


KINDS = ("ranking", "transvg", "weakly_supervised")
VISUAL = ("cnn", "sprite_encoder")


@dataclass
class ModelConfig:
    kind: str = "ranking"  # one of KINDS
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    stem_stride: int = 4
    dim: int = 64
    depth: int = 2  # transvg: fusion layers
    heads: int = 4  # transvg: fusion heads; ranking: phrase-attention heads
    dropout: float = 0.0
    pool_size: int = 3  # ranking: RoIAlign bins per side
    l1_weight: float = 5.0  # transvg: DETR-style weights of L1 and GIoU
    giou_weight: float = 2.0
    temperature: float = 0.1  # weakly_supervised: of the image-expression InfoNCE
    visual: str = "cnn"  # weakly_supervised: one of VISUAL (the CNN trained here, or frozen sprite-encoder maps)
    hard_negatives: float = 0.0  # weakly_supervised: weight of the same-image, other-object contrast


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if m.kind not in KINDS:
        raise ConfigError(f"model.kind: {m.kind!r}, expected one of {', '.join(KINDS)}")
    if m.dim % m.heads:
        raise ConfigError(f"model.dim: {m.dim} is not a multiple of model.heads = {m.heads}")
    if not m.channels or min(m.channels) < 1 or min(m.dim, m.depth, m.heads, m.stem_stride, m.pool_size) < 1:
        raise ConfigError("model: channels, dim, depth, heads, stem_stride and pool_size must be >= 1")
    if m.temperature <= 0:
        raise ConfigError(f"model.temperature: {m.temperature}, expected > 0")
    if m.visual not in VISUAL:
        raise ConfigError(f"model.visual: {m.visual!r}, expected one of {', '.join(VISUAL)}")
    if m.hard_negatives < 0:
        raise ConfigError(f"model.hard_negatives: {m.hard_negatives}, expected >= 0")


# ------------------------------------------------------------------------------------------------ features
@dataclass
class Sentence:
    sent_id: int
    text: str
    image: int  # index into the feature store's images
    box: tuple[float, float, float, float]  # ground truth [x, y, w, h] in pixels
    candidates: list[tuple[float, float, float, float]]  # every annotated object of the image
    target: int  # the index of the referred object in candidates
    segmentation: Any  # the referred annotation's COCO segmentation (polygons or RLE)
    ref_id: int = -1  # the ref the sentence belongs to (sentences of one ref name one object)


@dataclass
class GroundingStore:
    images: torch.Tensor  # (n_images, 3, H, W) uint8
    sizes: list[tuple[int, int]]  # (width, height) per image
    tokens: torch.Tensor  # (n_sentences, max_tokens, 384) MiniLM states
    token_mask: torch.Tensor  # (n_sentences, max_tokens)
    sentences: list[Sentence]
    split_of: list[str]  # per sentence, the ref's split


def ensure_built(d: DataConfig) -> Path:
    """The folder of the official files (see :func:`xmodal.tasks.pipeline.dataset_root`)."""
    return pipeline.dataset_root(d.root, "refcoco-scenes", d.build, [d.refs, d.instances])


def load_store(d: DataConfig) -> GroundingStore:
    """Read the official files, decode every image and encode every sentence (cached)."""
    from xmodal.data.benchmarks.refcoco import read_instances, read_refs
    from xmodal.transforms.cache import TransformCache

    root = ensure_built(d)
    refs, instances = read_refs(root / d.refs), read_instances(root / d.instances)
    images = {im.id: im for im in instances.images}
    annotation = {a.id: a for a in instances.annotations}
    per_image: dict[int, list] = {}
    for a in instances.annotations:
        per_image.setdefault(a.image_id, []).append(a)
    used = sorted({r.image_id for r in refs})
    slot = {image_id: k for k, image_id in enumerate(used)}
    sentences, split_of = [], []
    for r in refs:
        if r.ann_id not in annotation:
            raise DataError(f"ref {r.ref_id}: annotation {r.ann_id} is not in the instances", source=root / d.instances)
        if r.image_id not in images:
            raise DataError(f"ref {r.ref_id}: image {r.image_id} is not in the instances", source=root / d.instances)
        target = annotation[r.ann_id]
        if target.image_id != r.image_id:
            raise DataError(f"ref {r.ref_id}: annotation {r.ann_id} belongs to image {target.image_id}, not "
                            f"{r.image_id}", source=root / d.instances)
        objects = per_image[r.image_id]
        index = [a.id for a in objects].index(r.ann_id)
        for s in r.sentences:
            sentences.append(Sentence(s.sent_id, s.sent, slot[r.image_id], target.bbox,
                                      [a.bbox for a in objects], index, target.segmentation, r.ref_id))
            split_of.append(r.split)
    cache = TransformCache(d.cache)
    pixels = xfields.cached_images([root / d.images / images[i].file_name for i in used], cache)
    tokens, mask = xfields.cached_token_features([s.text for s in sentences], d.max_tokens, cache)
    sizes = [(images[i].width, images[i].height) for i in used]
    return GroundingStore(pixels, sizes, tokens, mask, sentences, split_of)


class GroundingDataset(Dataset):
    """Samples ``{"id": sent_id, "image": (3, H, W) float, "text": (L, 384), "text_mask": (L,), "box": (4,),
    "candidates": (K, 4), "candidate_mask": (K,), "target": int, "image_index": int}``; ``box`` is the ground
    truth (cx, cy, w, h) normalised by the image size, ``candidates`` the image's annotated boxes (x1, y1, x2, y2)
    normalised and padded to the most objects of any image of the store, ``target`` the referred one's index."""

    def __init__(self, store: GroundingStore, split: str) -> None:
        from xmodal.data.benchmarks.refcoco import SPLIT_NAMES

        if split not in SPLIT_NAMES:
            raise ConfigError(f"data split {split!r}: expected one of {', '.join(SPLIT_NAMES)}")
        self.store = store
        # as the refer loader: test splits keep refs whose split contains the name ('testA' in 'testA')
        self.indices = [i for i, s in enumerate(store.split_of) if (split in s if split.startswith("test") else s == split)]
        self.max_candidates = max((len(s.candidates) for s in store.sentences), default=1)

    def __len__(self) -> int:
        return len(self.indices)

    def sentence(self, index: int) -> Sentence:
        return self.store.sentences[self.indices[index]]

    def size(self, index: int) -> tuple[int, int]:
        return self.store.sizes[self.sentence(index).image]

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = self.indices[index]
        s, st = self.store.sentences[i], self.store
        w, h = st.sizes[s.image]
        x, y, bw, bh = s.box
        candidates = torch.zeros(self.max_candidates, 4)
        candidates[:, 2:] = 1.0  # padding: the whole image, masked out
        candidates[: len(s.candidates)] = torch.tensor([[cx / w, cy / h, (cx + cw) / w, (cy + ch) / h]
                                                        for cx, cy, cw, ch in s.candidates])
        return {"id": s.sent_id, "image": st.images[s.image].float() / 255.0, "text": st.tokens[i].float(),
                "text_mask": st.token_mask[i],
                "box": torch.tensor([(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h], dtype=torch.float32),
                "candidates": candidates, "candidate_mask": torch.arange(self.max_candidates) < len(s.candidates),
                "target": torch.tensor(s.target), "image_index": torch.tensor(s.image)}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    batch = default_collate([{k: v for k, v in s.items() if k != "id"} for s in samples])
    batch["id"] = [s["id"] for s in samples]
    return batch


# --------------------------------------------------------------------------------------------------- model
def _backbone(m: ModelConfig, image_size: tuple[int, int]) -> tuple[CNN2d, tuple[int, ...]]:
    """The CNN and the shape of its feature map for one image of ``image_size`` (width, height)."""
    from xmodal.nn.encoders.cnn import CNN2d

    backbone = CNN2d(3, m.channels, stem_stride=m.stem_stride)
    with torch.no_grad():
        grid = backbone.forward_features(torch.zeros(1, 3, image_size[1], image_size[0]))[0].shape
    return backbone, tuple(grid)


class GroundingModel(nn.Module):
    """A CNN feature map of the image and MiniLM token states fused by TransVG: ``batch -> {"box": (b, 4)}``."""

    def __init__(self, m: ModelConfig, image_size: tuple[int, int], text_dim: int = 384, max_tokens: int = 16) -> None:
        super().__init__()
        from xmodal.nn.vl import TransVG

        self.backbone, grid = _backbone(m, image_size)
        self.transvg = TransVG(visual_channels=m.channels[-1], text_dim=text_dim, dim=m.dim, depth=m.depth,
                               heads=m.heads, max_visual_tokens=grid[2] * grid[3], max_text_tokens=max_tokens,
                               dropout=m.dropout)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats, _ = self.backbone.forward_features(batch["image"])
        return {"box": self.transvg(feats, batch["text"], batch["text_mask"])}


class RankingModel(nn.Module):
    """A CNN feature map and MiniLM token states scoring the image's candidate boxes (MAttNet-style):
    ``batch -> {"logits": (b, K)}``."""

    def __init__(self, m: ModelConfig, image_size: tuple[int, int], text_dim: int = 384) -> None:
        super().__init__()
        from xmodal.nn.vl import CandidateRanker

        self.backbone, _ = _backbone(m, image_size)
        self.ranker = CandidateRanker(m.channels[-1], text_dim, dim=m.dim, pool_size=m.pool_size,
                                      text_heads=m.heads, dropout=m.dropout)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats, _ = self.backbone.forward_features(batch["image"])
        return {"logits": self.ranker(feats, batch["candidates"], batch["candidate_mask"], batch["text"],
                                      batch["text_mask"])}


def make_loss(m: ModelConfig):
    from xmodal.nn.vl import box_regression_loss, candidate_loss

    def regression(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """L1 + GIoU of the regressed and true normalised boxes (TransVG's objective)."""
        return box_regression_loss(outputs["box"], batch["box"], m.l1_weight, m.giou_weight)["loss"]

    def ranking(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Softmax cross-entropy over the image's candidates (MAttNet's objective with ground-truth boxes)."""
        return candidate_loss(outputs["logits"], batch["target"])

    return ranking if m.kind == "ranking" else regression


# ---------------------------------------------------------------------------------------------- evaluation
def to_pixels(box: list[float], size: tuple[int, int]) -> list[float]:
    """Normalised (cx, cy, w, h) -> COCO [x, y, w, h] in pixels."""
    cx, cy, w, h = box
    width, height = size
    return [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]


def predicted_boxes(model: nn.Module, dataset: GroundingDataset, batch_size: int = 256) -> dict[int, list[float]]:
    """``{sent_id: [x, y, w, h]}`` of every sentence of ``dataset``: the regressed box, or the best candidate's."""
    out = pipeline.outputs_all(model, dataset, collate, batch_size)
    if "logits" in out:
        best = out["logits"].argmax(1).tolist()
        return {dataset.sentence(k).sent_id: list(dataset.sentence(k).candidates[c]) for k, c in enumerate(best)}
    return {dataset.sentence(k).sent_id: to_pixels(b, dataset.size(k)) for k, b in enumerate(out["box"].tolist())}


def targets(dataset: GroundingDataset) -> dict[int, tuple[float, ...]]:
    return {dataset.sentence(k).sent_id: dataset.sentence(k).box for k in range(len(dataset))}


def evaluate(model: nn.Module, dataset: GroundingDataset, batch_size: int = 256) -> dict[str, float]:
    """Acc@IoU>=0.5 in percent and the number of sentences."""
    from xmodal.metrics.grounding import rec_accuracy

    return rec_accuracy(predicted_boxes(model, dataset, batch_size), targets(dataset))


def pooled_text(ds: GroundingDataset) -> torch.Tensor:
    """The mean MiniLM token state of every sentence with a constant 1 appended, ``(n, 385)`` float64."""
    tokens = ds.store.tokens[ds.indices].double()
    mask = ds.store.token_mask[ds.indices].double()[..., None]
    x = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return torch.cat([x, torch.ones(len(ds), 1, dtype=torch.float64)], dim=1)


def text_ridge(train_set: GroundingDataset, train_targets: torch.Tensor, dataset: GroundingDataset,
               lam: float = 1.0) -> torch.Tensor:
    """The language-only regressor: ridge regression (``lam`` times the identity, the bias column included) from
    :func:`pooled_text` of ``train_set`` to ``train_targets`` ``(n_train, k)``, applied to ``dataset``'s sentences:
    ``(n, k)`` float64, unclamped. Shared by the supervised and the weakly supervised task's baselines."""
    if len(train_targets) != len(train_set):
        raise ValueError(f"train_targets: {len(train_targets)} rows for {len(train_set)} training sentences")
    x_train = pooled_text(train_set)
    ridge = lam * torch.eye(x_train.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(x_train.T @ x_train + ridge, x_train.T @ train_targets.double())
    return pooled_text(dataset) @ weights


def baselines(dataset: GroundingDataset, *, train_set: GroundingDataset) -> dict[str, dict[str, float]]:
    """Chance, largest object, centre box, the mean training box and the language-only regressor."""
    from xmodal.metrics.grounding import box_iou_inclusive, rec_accuracy

    gt = targets(dataset)
    sents = [dataset.sentence(k) for k in range(len(dataset))]
    expected = sum(sum(box_iou_inclusive(c, s.box) >= 0.5 for c in s.candidates) / len(s.candidates) for s in sents)
    largest = {s.sent_id: max(s.candidates, key=lambda b: b[2] * b[3]) for s in sents}
    train_boxes = torch.stack([train_set[k]["box"] for k in range(len(train_set))])  # (n, 4) normalised
    mean = train_boxes.mean(0).tolist()
    centre = {s.sent_id: to_pixels([0.5, 0.5, mean[2], mean[3]], dataset.size(k)) for k, s in enumerate(sents)}
    majority = {s.sent_id: to_pixels(mean, dataset.size(k)) for k, s in enumerate(sents)}
    text_boxes = text_ridge(train_set, train_boxes, dataset).clamp(0, 1).tolist()
    language = {s.sent_id: to_pixels(b, dataset.size(k)) for k, (s, b) in enumerate(zip(sents, text_boxes))}
    return {"chance": {"accuracy": 100.0 * expected / len(sents), "n": len(sents)},
            "largest_object": rec_accuracy(largest, gt), "centre_box": rec_accuracy(centre, gt),
            "majority": rec_accuracy(majority, gt), "language_only": rec_accuracy(language, gt)}


def write_predictions(model: nn.Module, dataset: GroundingDataset, path: Path, batch_size: int = 256) -> Path:
    """``{"<sent_id>": [x, y, w, h]}`` (COCO pixels), as ``xmodal eval grounding --predictions`` reads it."""
    boxes = predicted_boxes(model, dataset, batch_size)
    return pipeline.write_json(path, {str(k): [round(v, 3) for v in b] for k, b in boxes.items()})


# ----------------------------------------------------------------------------------------------- the task
def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    from functools import partial

    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    store = load_store(d)
    train_set, val_set = GroundingDataset(store, d.train_split), GroundingDataset(store, d.eval_split)
    for name, ds in (("train_split", train_set), ("eval_split", val_set)):
        if len(ds) == 0:
            raise ConfigError(f"data.{name}: no sentences of split {getattr(d, name)!r} in {d.root}")
    size = store.sizes[0]
    if any(s != size for s in store.sizes):
        raise DataError("images of several sizes: the grounding task batches images of one size", source=d.root)
    bs = pipeline.eval_batch_size(cfg)
    if m.kind == "weakly_supervised":
        from xmodal.tasks import grounding_weak

        return grounding_weak.bundle(m, size, train_set, val_set, d.eval_split, bs, cache=d.cache)
    model = RankingModel(m, size) if m.kind == "ranking" else GroundingModel(m, size, max_tokens=d.max_tokens)
    return TaskBundle(model=model, loss=make_loss(m), train_set=train_set,
                      collate=collate, val_set=val_set, evaluate=partial(evaluate, batch_size=bs), primary=PRIMARY,
                      baselines=partial(baselines, train_set=train_set),
                      predict=partial(write_predictions, batch_size=bs), split=d.eval_split)
