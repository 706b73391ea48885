"""AVE: audio-visual event localisation, one label per 1-s segment (an event class or ``background``).

Data: the official files as distributed (``trainSet.txt``, ``valSet.txt``/``testSet.txt`` and ``Annotations.txt``
under ``data.root``, read with :mod:`xmodal.data.benchmarks.ave`), with either the raw clips ``AVE/<VideoID>.mp4``
(features by :mod:`xmodal.tasks.av_segments`, cached) or the official HDF5 features in ``data.features``
(``audio_feature.h5``, ``visual_feature.h5``; rows follow the lines of ``Annotations.txt``). The classes are the
28 official ones when every category is one of them, else the categories of ``Annotations.txt`` sorted, and
``background`` last. Model: the audio-guided visual attention with BiLSTMs
(:class:`xmodal.tasks.models.ave_attention.AVEAttentionNet`), with the acoustic branch when
``model.acoustic`` and, when ``model.evidence`` (raw clips only), the encoders' aligned class evidence beside
the BiLSTMs: per vocabulary class, heard (the sound encoder), seen (the sprite encoder) and their product,
which says whether a class is both, the definition of an AVE event. Metric: the official segment accuracy (percent). Baselines on the held-out split: chance,
the training-majority label, the clip's true event label broadcast to all 10 segments, and audio-only and
visual-only segment classifiers. Predictions: ``{"<VideoID>": [10 labels]}``, the file ``xmodal eval ave``
reads.

Recipe sections: ``data: {root, eval_split, features, cache}`` and ``model: {hidden, attention_dim,
head_hidden, acoustic, loss, evidence, dropout}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from xmodal.config.schema import parse_section
from xmodal.data.benchmarks import ave
from xmodal.data.synth import vocabulary
from xmodal.errors import ConfigError, DataError
from xmodal.tasks import av_segments, pipeline
from xmodal.tasks.av_segments import SegmentDataset
from xmodal.tasks.base import TaskBundle

SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
EVIDENCE_CLASSES = len(vocabulary.SOUNDING)


@dataclass
class DataConfig:
    root: str = "data/ave-scenes"
    eval_split: Literal["val", "test"] = "test"
    features: str | None = None  # a folder with the official audio_feature.h5 and visual_feature.h5
    cache: str | None = None  # feature cache folder; default $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    hidden: int = 64
    attention_dim: int = 64
    head_hidden: int = 64
    acoustic: bool = True
    loss: Literal["reference", "cross_entropy"] = "cross_entropy"
    evidence: bool = True  # the encoders' aligned class evidence beside the BiLSTMs (raw scene clips only)
    # "tied": one weight per evidence feature shared by every class (TiedEvidenceHead); "linear": per class
    evidence_head: Literal["linear", "tied"] = "linear"
    dropout: float = 0.0


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    for key in ("hidden", "attention_dim", "head_hidden"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {m.dropout}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


def evidence_columns(classes: list[str]) -> list[int]:
    """Each class's column in the encoders' class evidence as the scene builder spells AVE classes."""
    from xmodal.data.synth.scene_benchmarks_av import ave_name

    return av_segments.evidence_columns(classes, ave_name)


def class_names(annotations: list[ave.AVEAnnotation]) -> list[str]:
    """The official 29 classes when every category is official, else the sorted categories + background."""
    categories = {r.category for r in annotations if r.category != "0"}
    if categories <= set(ave.AVE_CATEGORIES):
        return list(ave.AVE_CLASSES)
    return [*sorted(categories), ave.BACKGROUND]


def _official_rows(root: Path, features: Path, records: list[ave.AVEAnnotation]) -> list[int]:
    """Rows of the official HDF5 arrays (the lines of Annotations.txt) holding ``records``."""
    row_of = {r: i for i, r in reversed(list(enumerate(ave.read_ave(root / "Annotations.txt"))))}
    missing = [r.video_id for r in records if r not in row_of]
    if missing:
        raise DataError(f"{len(missing)} clips of the split are not lines of Annotations.txt, e.g. {missing[0]!r}",
                        root / "Annotations.txt")
    return [row_of[r] for r in records]


def load_split(d: DataConfig, split: str) -> tuple[list[ave.AVEAnnotation], list[dict[str, torch.Tensor]]]:
    """The annotations of ``split`` and each clip's raw (unscaled) features."""
    root = Path(d.root)
    records = ave.read_ave(root / SPLIT_FILES[split], unique=True)
    if not records:
        raise DataError("the split lists no clips", root / SPLIT_FILES[split])
    if d.features is None:
        return records, av_segments.clip_features([root / "AVE" / f"{r.video_id}.mp4" for r in records], d.cache)
    features = Path(d.features)
    rows = _official_rows(root, features, records)
    audio = ave.read_ave_features(features / "audio_feature.h5")
    visual = ave.read_ave_features(features / "visual_feature.h5")
    return records, [{"audio": torch.from_numpy(np.asarray(audio[i], np.float32)),
                      "visual": torch.from_numpy(np.asarray(visual[i], np.float32))} for i in rows]


class AVEModel(nn.Module):
    """The batch interface of :class:`AVEAttentionNet`: ``batch -> {"logits": (N, 10, classes)}``."""

    def __init__(self, classes: list[str], audio_dim: int, visual_dim: int, grid_cells: int, m: ModelConfig) -> None:
        super().__init__()
        from xmodal.tasks.models.ave_attention import AVEAttentionNet

        self.acoustic, self.evidence, self.tied = m.acoustic, m.evidence, m.evidence_head == "tied"
        features = av_segments.EVIDENCE_FEATURES
        evidence_dim = (features if self.tied else features * EVIDENCE_CLASSES) if m.evidence else 0
        self.net = AVEAttentionNet(audio_dim=audio_dim, visual_dim=visual_dim, grid_cells=grid_cells,
                                   attention_dim=m.attention_dim, hidden=m.hidden, num_classes=len(classes),
                                   head_hidden=m.head_hidden,
                                   acoustic_dim=av_segments.ACOUSTIC_DIM if m.acoustic else 0,
                                   evidence_dim=evidence_dim, dropout=m.dropout,
                                   evidence_columns=evidence_columns(classes) if self.tied else None)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        evidence = None
        if self.evidence:  # heard and seen (the product), heard, seen: per class of the vocabulary
            evidence = av_segments.stacked_evidence(batch)  # (N, T, 3, classes)
            if not self.tied:
                evidence = evidence.flatten(2)
        return self.net(batch["audio"], batch["visual"], batch.get("acoustic") if self.acoustic else None,
                        evidence)


def ave_objective(outputs: dict[str, torch.Tensor], batch: dict[str, Any], kind: str = "cross_entropy") -> torch.Tensor:
    """Cross-entropy per segment, or the reference's soft-margin loss on the softmax (``kind="reference"``)."""
    from xmodal.tasks.models.ave_attention import ave_loss

    logits, labels = outputs["logits"], batch["label"]
    if kind == "reference":
        return ave_loss(logits, labels)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def _labels_of(dataset: SegmentDataset, classes: list[str]) -> dict[str, list[str]]:
    return {dataset.ids[i]: [classes[int(c)] for c in dataset.targets[i]] for i in range(len(dataset))}


def predicted_labels(model: nn.Module, dataset: SegmentDataset, classes: list[str]) -> dict[str, list[str]]:
    out = av_segments.predict_all(model, dataset)
    return {sid: [classes[int(c)] for c in row] for sid, row in zip(out["id"], out["logits"].argmax(-1))}


def evaluate(model: nn.Module, dataset: SegmentDataset, *, classes: list[str]) -> dict[str, float]:
    from xmodal.metrics.ave import ave_segment_accuracy

    return {"accuracy": ave_segment_accuracy(_labels_of(dataset, classes), predicted_labels(model, dataset, classes))}


def _stream(dataset: SegmentDataset, name: str) -> np.ndarray:
    """Per-segment rows of one feature stream (the visual grid averaged over its cells)."""
    x = torch.stack([c[name] for c in dataset.clips])
    if name == "visual":
        x = torch.cat([x.mean((2, 3)), x.amax((2, 3))], -1)
    return x.reshape(-1, x.shape[-1]).numpy()


def baselines(dataset: SegmentDataset, *, train_set: SegmentDataset,
              classes: list[str]) -> dict[str, dict[str, float]]:
    """Chance (uniform guessing, its expected accuracy), majority (the most frequent training segment label),
    broadcast clip label (the clip's true event on all 10 segments) and audio-only / visual-only segment
    classifiers fitted on the training split (audio: the sound embedding, acoustic descriptors and the sound
    encoder's class evidence; visual: the grid's mean and max per channel and the sprite encoder's class
    evidence; each stream that the features hold)."""
    from xmodal.metrics.ave import ave_segment_accuracy

    truth = _labels_of(dataset, classes)
    y_train = torch.stack(train_set.targets).reshape(-1).numpy()
    majority = classes[int(np.bincount(y_train, minlength=len(classes)).argmax())]
    clip_label = {sid: next((c for c in labels if c != ave.BACKGROUND), ave.BACKGROUND)
                  for sid, labels in truth.items()}
    table = {"chance": {"accuracy": 100 / len(classes)},
             "majority": {"accuracy": ave_segment_accuracy(truth, {s: [majority] * len(v) for s, v in truth.items()})},
             "broadcast_clip_label": {"accuracy": ave_segment_accuracy(
                 truth, {s: [clip_label[s]] * len(v) for s, v in truth.items()})}}
    streams = {"audio_only": ["audio", "acoustic", "audio_classes"], "visual_only": ["visual", "visual_classes"]}
    for name, keys in streams.items():
        keys = [k for k in keys if k in dataset.clips[0]]
        predict = av_segments.fit_segment_classifier(np.concatenate([_stream(train_set, k) for k in keys], 1),
                                                     y_train)
        flat = predict(np.concatenate([_stream(dataset, k) for k in keys], 1)).reshape(len(dataset), -1)
        table[name] = {"accuracy": ave_segment_accuracy(
            truth, {sid: [classes[int(c)] for c in row] for sid, row in zip(dataset.ids, flat)})}
    return table


def write_predictions(model: nn.Module, dataset: SegmentDataset, path: Path, *, classes: list[str]) -> Path:
    """``{"<VideoID>": [10 labels]}`` as ``xmodal eval ave --predictions`` reads it."""
    return pipeline.write_json(path, predicted_labels(model, dataset, classes), indent=1)


def build_data(cfg: dict[str, Any]) -> tuple[av_segments.SegmentDataset, av_segments.SegmentDataset, list[str]]:
    d, _ = _configs(cfg)
    root = Path(d.root)
    all_records = ave.read_ave(root / "Annotations.txt")
    classes = class_names(all_records)
    index = {c: i for i, c in enumerate(classes)}
    splits = {split: load_split(d, split) for split in ("train", d.eval_split)}
    scaler = av_segments.Scaler.fit(splits["train"][1])

    def dataset(split: str) -> av_segments.SegmentDataset:
        records, clips = splits[split]
        unknown = [r.category for r in records if r.category not in index and r.start < r.end]
        if unknown:
            raise DataError(f"category {unknown[0]!r} is not in Annotations.txt", root / SPLIT_FILES[split])
        targets = [torch.tensor([index[label] for label in r.segment_labels()]) for r in records]
        return av_segments.SegmentDataset([r.video_id for r in records], [scaler(c) for c in clips], targets)

    return dataset("train"), dataset(d.eval_split), classes


def build(cfg: dict[str, Any]) -> TaskBundle:
    d, m = _configs(cfg)
    train_set, eval_set, classes = build_data(cfg)
    first = train_set.clips[0]
    if m.acoustic and "acoustic" not in first:
        raise ConfigError("model.acoustic: the precomputed features hold no acoustic descriptors; set it false")
    if m.evidence and "audio_classes" not in first:
        raise ConfigError("model.evidence: the precomputed features hold no encoder class evidence; set it false")
    visual = first["visual"]
    if m.evidence and m.evidence_head == "tied" and max(evidence_columns(classes)) < 0:
        raise ConfigError("model.evidence_head: no class of Annotations.txt is in the scene vocabulary; use linear")
    model = AVEModel(classes, first["audio"].shape[-1], visual.shape[-1], visual.shape[1] * visual.shape[2], m)
    return TaskBundle(model=model, loss=partial(ave_objective, kind=m.loss), train_set=train_set,
                      collate=av_segments.collate, val_set=eval_set, evaluate=partial(evaluate, classes=classes),
                      primary="accuracy", baselines=partial(baselines, train_set=train_set, classes=classes),
                      predict=partial(write_predictions, classes=classes), artifacts={"classes": classes},
                      split=d.eval_split)


def write_official_features(root: Path, cache_dir: str | None = None) -> Path:
    """The features AVE distributes, computed from the clips under ``root`` (a scene build or any folder in the
    official layout): ``features/audio_feature.h5`` ``(N, 10, 128)`` and ``features/visual_feature.h5``
    ``(N, 10, 7, 7, 64)``, dataset ``avadataset``, float32, row i for line i of ``Annotations.txt`` as in the
    official files (a VideoID listed twice gets its clip's features twice). The streams are the sound and sprite
    encoders' (:mod:`xmodal.tasks.av_segments`) where the benchmark has VGGish and VGG-19 pool5; a recipe reads
    them with ``data.features=<root>/features model.acoustic=false model.evidence=false``."""
    from xmodal.errors import require_module

    h5py = require_module("h5py", package="h5py")
    root = Path(root)
    records = ave.read_ave(root / "Annotations.txt")
    ids = list(dict.fromkeys(r.video_id for r in records))
    clips = dict(zip(ids, av_segments.clip_features([root / "AVE" / f"{v}.mp4" for v in ids], cache_dir),
                     strict=True))
    out = root / "features"
    out.mkdir(exist_ok=True)
    for name, stream in (("audio_feature.h5", "audio"), ("visual_feature.h5", "visual")):
        array = np.stack([clips[r.video_id][stream].numpy() for r in records]).astype(np.float32)
        partial_path = out / f".{name}.partial"  # renamed when complete: a killed build leaves no half file
        with h5py.File(partial_path, "w") as f:
            f.create_dataset("avadataset", data=array)
        partial_path.replace(out / name)
    return out
