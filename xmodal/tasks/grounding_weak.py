"""Weakly supervised visual grounding (``task: grounding`` with ``model.kind: weakly_supervised``): a heatmap
model trained from image-expression pairs alone, no boxes, scored by the pointing game.

Data and features are those of :mod:`xmodal.tasks.grounding` (RefCOCO-format files, the frozen MiniLM token
states). Region features (``model.visual``): ``cnn``, the map of a CNN trained end to end from the pixels, or
``sprite_encoder``, frozen maps computed once per image (:func:`sprite_regions`): the map of
:class:`xmodal.data.synth.sprite_encoder.SpriteEncoder` (trained here on the vocabulary's sprites, the stand-in
for a pretrained detector backbone), run at the object scale it was trained at, with its per-cell class
probabilities and each cell's mean colour. Model: :class:`xmodal.nn.vl.TextRegionAttention`; the expression
attends over the map's cells and the attended feature must match the expression better than other images of the
batch do (symmetric InfoNCE, :func:`xmodal.nn.vl.image_expression_loss`; pairs showing one image are not
negatives of each other). With ``model.hard_negatives`` > 0, expressions of the same image that belong to other
refs (RefCOCO has one ref per object, so they name other objects) are hard negatives
(:func:`xmodal.nn.vl.referent_contrast_loss`): each expression's attention must land where the others' does not.
Training reads neither boxes nor masks, only which sentences share an image and which share a ref.

Evaluation: the pointing game as TorchRay (:func:`xmodal.metrics.grounding.pointing_game`, tolerance 15 px),
the heatmap being the attention upsampled bilinearly to the image's size, the mask that of the referred
annotation (its COCO polygons or RLE rasterised by pycocotools). Baselines on the same sentences:
``centre_point`` (the image centre), ``random_point`` (a uniformly random pixel, seed 0), ``largest_object``
(the centre of the image's largest annotated box; it reads boxes) and ``language_only`` (the point regressed from
the sentence alone, fitted on the training sentences' box centres; it reads boxes too). Predictions (``xmodal predict``): an npz
of ``sent_id`` ``(N,)``, ``heatmaps`` ``(N, h, w)`` float32 at the feature map's size (upsample bilinearly,
``align_corners=False``, to ``image_size`` (width, height) to score them), and ``points`` ``(N, 2)`` the
``(x, y)`` pixel of each upsampled map's first maximum, the point the pointing game takes; rows follow the
split's sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle
from xmodal.tasks.grounding import GroundingDataset, ModelConfig, _backbone, collate

if TYPE_CHECKING:  # imported where the model is built
    from xmodal.nn.encoders.cnn import CNN2d

PRIMARY = "accuracy"
TOLERANCE = 15  # pixels, TorchRay's default
COLOUR_CHANNELS = 3


# ------------------------------------------------------------------------------------------ region features
def sprite_regions(images: torch.Tensor, cache_dir: str | None = None) -> torch.Tensor:
    """``(N, 64 + classes + 3, h, w)`` float32 region features of uint8 images ``(N, 3, H, W)``: the frozen
    sprite encoder's map, its class probabilities per cell and each cell's mean colour (the encoder learnt
    classes, while expressions also name colours). Frames are resized by ``INPUT / recipe.size``, the factor
    the encoder's training frames were resized by, so objects keep the scale it learnt: a 160-px frame runs at
    140 px and gives a 9 x 9 map. Kept in the transform cache under the images' bytes and the encoder's weights
    key; the encoder itself comes from the default cache (trained once per machine)."""
    import hashlib

    from xmodal.data.synth import sprite_encoder as se
    from xmodal.transforms.cache import TransformCache, make_key

    recipe = se.EncoderRecipe()
    h, w = images.shape[2:]
    size = (round(h * se.INPUT / recipe.size), round(w * se.INPUT / recipe.size))
    digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    key = make_key(digest, "grounding_weak.sprite_regions", {"shape": list(images.shape), "size": list(size)},
                   weights=se.weights_key(recipe))

    def compute() -> dict[str, torch.Tensor]:
        encoder = se.load_sprite_encoder(None, recipe)
        rows = []
        with torch.no_grad():
            for a in range(0, len(images), 64):
                x = images[a: a + 64].float() / 255.0
                out = encoder(x, size=size)
                colour = nn.functional.adaptive_avg_pool2d(x, out["map"].shape[2:])
                rows.append(torch.cat([out["map"], out["logits"].softmax(1), colour], dim=1))
        return {"regions": torch.cat(rows)}

    return TransformCache(cache_dir).get_or_compute(key, compute)["regions"]


def region_channels() -> int:
    """The channels of :func:`sprite_regions`."""
    from xmodal.data.synth import sprite_encoder as se

    return se.CHANNELS + len(se.CLASS_NAMES) + COLOUR_CHANNELS


class WeakGroundingDataset(GroundingDataset):
    """The samples of ``base`` (same store and split) with ``"referent"`` (the sentence's ref id) and, when
    ``regions`` ``(n_images, C, h, w)`` is given, ``"regions"`` (C, h, w): the precomputed map of its image."""

    def __init__(self, base: GroundingDataset, regions: torch.Tensor | None = None) -> None:
        self.store, self.indices, self.max_candidates = base.store, base.indices, base.max_candidates
        self.regions = regions

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        s = self.sentence(index)
        sample["referent"] = torch.tensor(s.ref_id)
        if self.regions is not None:
            sample["regions"] = self.regions[s.image]
        return sample


# --------------------------------------------------------------------------------------------------- model
class WeakGroundingModel(nn.Module):
    """``batch -> {"heatmap": (b, H', W')}`` at the feature map's size and, in training, ``"scores"`` ``(b, b)``
    (every expression against every image of the batch) and ``"similarity"`` ``(b, H'*W')``. The map is the CNN's
    of ``batch["image"]`` (``model.visual: cnn``) or the precomputed ``batch["regions"]``."""

    def __init__(self, m: ModelConfig, image_size: tuple[int, int], text_dim: int = 384) -> None:
        super().__init__()
        from xmodal.nn.vl import TextRegionAttention

        self.backbone: CNN2d | None = None
        if m.visual == "cnn":
            self.backbone, _ = _backbone(m, image_size)
        channels = m.channels[-1] if m.visual == "cnn" else region_channels()
        self.attention = TextRegionAttention(channels, text_dim, dim=m.dim, heads=m.heads)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.backbone is None:
            feats = batch["regions"]
        else:
            feats, _ = self.backbone.forward_features(batch["image"])
        out = self.attention(feats, batch["text"], batch["text_mask"])
        if not self.training:  # (b, b) is not per sample: evaluation gathers per-sample outputs only
            return {"heatmap": out["heatmap"]}
        return out


def make_loss(m: ModelConfig) -> Callable[[dict[str, torch.Tensor], dict[str, Any]], torch.Tensor]:
    from xmodal.nn.vl import image_expression_loss, referent_contrast_loss

    def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Symmetric InfoNCE of expressions and images (two rows of one image are not each other's negatives),
        plus ``hard_negatives`` times the same-image contrast of expressions naming other objects."""
        image = batch["image_index"]
        same = image[:, None] == image[None, :]
        total = image_expression_loss(outputs["scores"], m.temperature, same)
        if m.hard_negatives > 0:
            ref = batch["referent"]
            other = same & (ref[:, None] != ref[None, :])
            attention = outputs["heatmap"].flatten(1)
            total = total + m.hard_negatives * referent_contrast_loss(outputs["similarity"], attention, other,
                                                                      m.temperature)
        return total

    return loss


# ---------------------------------------------------------------------------------------------- evaluation
def referred_masks(dataset: GroundingDataset) -> np.ndarray:
    """``(N, H, W)`` bool: the referred annotation's segmentation of every sentence, rasterised by pycocotools
    (the COCO reference decoder; polygons of one annotation are merged)."""
    from pycocotools import mask as mask_utils

    out = []
    for k in range(len(dataset)):
        s = dataset.sentence(k)
        w, h = dataset.size(k)
        seg = s.segmentation
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, h, w)
        else:
            rle = seg
        out.append(mask_utils.decode(rle).astype(bool))
    return np.stack(out)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, h, w)`` maps -> ``(N, H, W)`` at the image ``size`` (width, height), bilinear."""
    w, h = size
    return nn.functional.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def heatmaps(model: nn.Module, dataset: GroundingDataset, batch_size: int = 256) -> torch.Tensor:
    """``(N, h, w)`` float32: every sentence's attention over the feature map."""
    return pipeline.outputs_all(model, dataset, collate, batch_size)["heatmap"]


def evaluate(model: nn.Module, dataset: GroundingDataset, batch_size: int = 256) -> dict[str, float]:
    """The pointing game in percent (TorchRay, 15-px tolerance) over the split's sentences."""
    from xmodal.metrics.grounding import pointing_game

    maps = upsample(heatmaps(model, dataset, batch_size), dataset.size(0))
    return pointing_game(maps, referred_masks(dataset), tolerance=TOLERANCE)


def _point_maps(points: list[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """One map per (x, y) point, 1 there and 0 elsewhere: ``(N, H, W)``."""
    w, h = size
    maps = np.zeros((len(points), h, w), dtype=np.float32)
    for k, (x, y) in enumerate(points):
        maps[k, min(max(y, 0), h - 1), min(max(x, 0), w - 1)] = 1.0
    return maps


def box_centres(dataset: GroundingDataset) -> torch.Tensor:
    """``(n, 2)`` float64: the referred box's centre (cx, cy) of every sentence, normalised by its image's size."""
    rows = []
    for k in range(len(dataset)):
        x, y, bw, bh = dataset.sentence(k).box
        w, h = dataset.size(k)
        rows.append(((x + bw / 2) / w, (y + bh / 2) / h))
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 2)


def baselines(dataset: GroundingDataset, *, train_set: GroundingDataset) -> dict[str, dict[str, float]]:
    """Centre point, a uniformly random point (seed 0), the centre of the largest annotated box and
    ``language_only``: the point predicted from the sentence alone, the supervised task's ridge regression
    (:func:`xmodal.tasks.grounding.text_ridge`) from the mean MiniLM token state to the referred box's centre,
    fitted on ``train_set``'s sentences. Like ``largest_object`` it reads boxes, which the weakly supervised model
    never sees: a baseline may use more supervision than the model, and this one tells how much of the pointing
    game the expression's wording alone ("the left ...", ordinals, sizes) gives away."""
    from xmodal.metrics.grounding import pointing_game
    from xmodal.tasks.grounding import text_ridge

    masks = referred_masks(dataset)
    size = dataset.size(0)
    w, h = size
    n = len(dataset)
    rng = np.random.default_rng(0)
    random_points = list(zip(rng.integers(0, w, n).tolist(), rng.integers(0, h, n).tolist()))
    largest = []
    for k in range(n):
        x, y, bw, bh = max(dataset.sentence(k).candidates, key=lambda b: b[2] * b[3])
        largest.append((int(x + bw / 2), int(y + bh / 2)))
    centres = text_ridge(train_set, box_centres(train_set), dataset).clamp(0, 1)
    language = [(int(cx * w), int(cy * h)) for cx, cy in centres.tolist()]  # _point_maps clamps x = w to w - 1
    return {name: pointing_game(_point_maps(points, size), masks, tolerance=TOLERANCE)
            for name, points in (("centre_point", [(w // 2, h // 2)] * n), ("random_point", random_points),
                                 ("largest_object", largest), ("language_only", language))}


def write_predictions(model: nn.Module, dataset: GroundingDataset, path: Path, batch_size: int = 256) -> Path:
    """An npz of ``sent_id``, ``heatmaps`` (feature-map size), ``points`` (x, y) and ``image_size``."""
    maps = heatmaps(model, dataset, batch_size)
    size = dataset.size(0)
    flat = upsample(maps, size).flatten(1).argmax(1)  # the first maximum in row-major order
    points = torch.stack([flat % size[0], flat // size[0]], dim=1)
    ids = np.array([dataset.sentence(k).sent_id for k in range(len(dataset))], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a path without it
        np.savez_compressed(f, sent_id=ids, heatmaps=maps.numpy(), points=points.numpy(),
                            image_size=np.array(size, dtype=np.int64))
    return path


def bundle(m: ModelConfig, image_size: tuple[int, int], train_set: GroundingDataset, val_set: GroundingDataset,
           split: str, batch_size: int, cache: str | None = None) -> TaskBundle:
    """The TaskBundle of the weakly supervised model on the grounding task's datasets (``cache``: the transform
    cache of the region features)."""
    artifacts: dict[str, Any] = {}
    regions = None
    if m.visual == "sprite_encoder":
        from xmodal.data.synth import sprite_encoder as se

        regions = sprite_regions(train_set.store.images, cache)
        artifacts["region_features"] = se.describe()
    # TaskBundle takes baselines over any Dataset; the trainer calls them on val_set only, a GroundingDataset
    val_baselines = cast(Callable[[Dataset], dict[str, dict[str, float]]], partial(baselines, train_set=train_set))
    return TaskBundle(model=WeakGroundingModel(m, image_size), loss=make_loss(m),
                      train_set=WeakGroundingDataset(train_set, regions), collate=collate,
                      val_set=WeakGroundingDataset(val_set, regions), evaluate=partial(evaluate, batch_size=batch_size),
                      primary=PRIMARY, baselines=val_baselines, artifacts=artifacts,
                      predict=partial(write_predictions, batch_size=batch_size), split=split)
