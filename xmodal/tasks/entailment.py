"""Visual entailment on SNLI-VE-format data, EVE-style: does the image entail, contradict or leave open the
hypothesis?

Data: ``snli_ve_{train,dev,test}.jsonl`` as distributed (``Flikr30kID``, ``sentence2``, ``gold_label``; read by
:mod:`xmodal.data.benchmarks.snli_ve`) and the images they name under ``data.images``. ``data.build`` (builder
options) makes ``snli-ve-scenes`` write them into ``data.root`` (null: a folder of the data root named by the
options) when they are missing. Training uses ``snli_ve_train.jsonl``; evaluation ``data.eval_file``.

Features, decoded once and kept in the :mod:`xmodal.transforms` cache: images ``(3, H, W)`` uint8 and the frozen
MiniLM's per-token states of the hypothesis (:func:`xmodal.tasks.fields.token_features`). Model: a 2-D CNN's
feature map read as regions, and :class:`xmodal.nn.vl.EVE` (hypothesis-to-image and image-to-hypothesis
attention, pooled, three-way classifier), trained with cross-entropy.

Evaluation: accuracy in percent, the official metric (:func:`xmodal.metrics.entailment.entailment_accuracy`).
Baselines on the same pairs: ``chance`` (100 / 3), ``majority`` (the most frequent training label, ties going to
the first of entailment, neutral, contradiction) and
``hypothesis_only`` (a least-squares classifier on the mean MiniLM token state of the hypothesis, fitted on the
training pairs: what the text alone gives away). Predictions: ``{"<pairID>": label}``, the file ``xmodal eval
entailment`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.metrics.entailment import LABELS
from xmodal.tasks import fields as xfields
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle

PRIMARY = "accuracy"


@dataclass
class DataConfig:
    root: str | None = None  # the folder of the jsonl files; null: the data root's build of data.build
    images: str = "flickr30k_images"
    build: dict[str, Any] | None = None  # snli-ve-scenes options; build into root when the files are missing
    train_file: str = "snli_ve_train.jsonl"
    eval_file: str = "snli_ve_dev.jsonl"
    max_tokens: int = 24
    cache: str | None = None  # transform cache directory; null: $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    stem_stride: int = 4
    dim: int = 64
    heads: int = 4
    dropout: float = 0.0


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if m.dim % 2 or m.dim % m.heads:
        raise ConfigError(f"model.dim: {m.dim} must be even and a multiple of model.heads = {m.heads}")
    if not m.channels or min(m.channels) < 1 or min(m.heads, m.stem_stride) < 1:
        raise ConfigError("model: channels, heads and stem_stride must be >= 1")


# ------------------------------------------------------------------------------------------------ features
class EntailmentDataset(Dataset):
    """Samples ``{"id": pairID, "image": (3, H, W) float, "text": (L, 384), "text_mask": (L,), "label": int}``
    (label: the index in :data:`xmodal.metrics.entailment.LABELS`)."""

    def __init__(self, path: Path, image_dir: Path, d: DataConfig, cache: Any) -> None:
        from xmodal.data.benchmarks.snli_ve import read_snli_ve

        pairs = read_snli_ve(path)
        if not pairs:
            raise ConfigError(f"{path}: no pairs")
        names = sorted({p.image for p in pairs})
        slot = {n: k for k, n in enumerate(names)}
        self.ids = [p.pair_id for p in pairs]
        self.image_of = [slot[p.image] for p in pairs]
        self.labels = torch.tensor([LABELS.index(p.gold_label) for p in pairs])
        self.images = xfields.cached_images([image_dir / n for n in names], cache)
        self.tokens, self.mask = xfields.cached_token_features([p.hypothesis for p in pairs], d.max_tokens, cache)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"id": self.ids[i], "image": self.images[self.image_of[i]].float() / 255.0,
                "text": self.tokens[i].float(), "text_mask": self.mask[i], "label": self.labels[i]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    batch = default_collate([{k: v for k, v in s.items() if k != "id"} for s in samples])
    batch["id"] = [s["id"] for s in samples]
    return batch


# --------------------------------------------------------------------------------------------------- model
class EntailmentModel(nn.Module):
    """CNN regions and MiniLM token states through EVE: ``batch -> {"logits": (b, 3)}``."""

    def __init__(self, m: ModelConfig, text_dim: int = 384) -> None:
        super().__init__()
        from xmodal.nn.encoders.cnn import CNN2d
        from xmodal.nn.vl import EVE

        self.backbone = CNN2d(3, m.channels, stem_stride=m.stem_stride)
        self.eve = EVE(visual_dim=m.channels[-1], text_dim=text_dim, dim=m.dim, heads=m.heads,
                       num_classes=len(LABELS), dropout=m.dropout)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats, _ = self.backbone.forward_features(batch["image"])
        regions = feats.flatten(2).transpose(1, 2)  # (b, H' * W', C): every grid cell a region
        return {"logits": self.eve(regions, batch["text"], batch["text_mask"])}


def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """Cross-entropy over the three labels."""
    return nn.functional.cross_entropy(outputs["logits"], batch["label"])


# ---------------------------------------------------------------------------------------------- evaluation
def predicted_labels(model: nn.Module, dataset: EntailmentDataset, batch_size: int = 256) -> dict[str, str]:
    out = pipeline.outputs_all(model, dataset, collate, batch_size)
    return {pid: LABELS[k] for pid, k in zip(out["id"], out["logits"].argmax(1).tolist())}


def gold(dataset: EntailmentDataset) -> dict[str, str]:
    return {pid: LABELS[k] for pid, k in zip(dataset.ids, dataset.labels.tolist())}


def evaluate(model: nn.Module, dataset: EntailmentDataset, batch_size: int = 256) -> dict[str, float]:
    """Accuracy in percent, as ``xmodal eval entailment`` scores it."""
    from xmodal.metrics.entailment import entailment_accuracy

    return entailment_accuracy(predicted_labels(model, dataset, batch_size), gold(dataset))


def _pooled(ds: EntailmentDataset) -> torch.Tensor:
    m = ds.mask.double()[..., None]
    x = (ds.tokens.double() * m).sum(1) / m.sum(1).clamp_min(1.0)
    return torch.cat([x, torch.ones(len(ds), 1, dtype=torch.float64)], dim=1)


def baselines(dataset: EntailmentDataset, *, train_set: EntailmentDataset) -> dict[str, dict[str, float]]:
    """Chance, the majority training label and the hypothesis-only classifier, in percent."""
    from xmodal.metrics.entailment import entailment_accuracy

    truth = gold(dataset)
    majority = LABELS[int(torch.bincount(train_set.labels, minlength=len(LABELS)).argmax())]
    # least squares on one-hot targets (ridge, lambda = 1): a linear probe of the hypothesis alone
    x = _pooled(train_set)
    y = nn.functional.one_hot(train_set.labels, len(LABELS)).double()
    w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
    text_only = {pid: LABELS[k] for pid, k in zip(dataset.ids, (_pooled(dataset) @ w).argmax(1).tolist())}
    return {"chance": {"accuracy": 100.0 / len(LABELS)},
            "majority": entailment_accuracy({pid: majority for pid in truth}, truth),
            "hypothesis_only": entailment_accuracy(text_only, truth)}


def write_predictions(model: nn.Module, dataset: EntailmentDataset, path: Path, batch_size: int = 256) -> Path:
    """``{"<pairID>": "entailment" | "neutral" | "contradiction"}``, as ``xmodal eval entailment`` reads it."""
    return pipeline.write_json(path, predicted_labels(model, dataset, batch_size))


# ----------------------------------------------------------------------------------------------- the task
def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    from xmodal.transforms.cache import TransformCache

    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    root = pipeline.dataset_root(d.root, "snli-ve-scenes", d.build, [d.train_file, d.eval_file])
    cache = TransformCache(d.cache)
    train_set = EntailmentDataset(root / d.train_file, root / d.images, d, cache)
    val_set = EntailmentDataset(root / d.eval_file, root / d.images, d, cache)
    bs = pipeline.eval_batch_size(cfg)
    return TaskBundle(model=EntailmentModel(m), loss=loss, train_set=train_set, collate=collate, val_set=val_set,
                      evaluate=partial(evaluate, batch_size=bs), primary=PRIMARY,
                      baselines=partial(baselines, train_set=train_set),
                      predict=partial(write_predictions, batch_size=bs), split=Path(d.eval_file).stem)
