"""AVVP (audio-visual video parsing on LLP): which events are heard and which are seen in every 1-s segment,
learnt from video-level labels only.

Data: the official files under ``data.root`` (``AVVP_train.csv`` weak labels for training; ``AVVP_{val,test}_pd.csv``
and the dense ``AVVP_eval_audio.csv`` / ``AVVP_eval_visual.csv`` for evaluation; ``classes.txt`` when present,
else the 25 official classes), read with :mod:`xmodal.data.benchmarks.avvp`, with either the raw clips
``LLP_dataset/video/<filename>.mp4`` (features by :mod:`xmodal.tasks.av_segments`, cached) or the official
``.npy`` features under ``data.features`` (``vggish/``, ``res152/``, ``r2plus1d_18/``). The dense labels of the
evaluation split are only read for evaluation. Model: the hybrid attention network with attentive MMIL pooling
(:class:`xmodal.tasks.models.han.HANParser`) and its loss; from raw clips its 2-D stream is the sprite encoder's
pooled vector of 8 frames per segment and its spatio-temporal stream the segment grid's per-channel mean and
max; with ``model.evidence`` (raw scene clips only) each modality's segment logits also get the encoders'
class evidence (heard, seen, both; :func:`xmodal.tasks.av_segments.stacked_evidence`) through weights shared by
every class. Predictions are
thresholded at 0.5 and filtered by the video-level probability as the official pipeline
(:func:`xmodal.metrics.avvp.avvp_postprocess`); metrics are the official segment- and event-level F-scores.
Baselines on the held-out split: chance (every cell on with probability one half), majority (the most frequent
training class everywhere) and audio-only / visual-only (one stream's segment classifier, trained on the video
labels, predicting both tracks; the audio one sees the sound embedding, acoustic descriptors and the heard
evidence, the visual one the grid's per-channel mean and max and the seen evidence, each stream that the
features hold).

Recipe sections: ``data: {root, eval_split, features, cache}`` and ``model: {dim, ff_dim, heads, layers,
dropout, acoustic, evidence}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.data.benchmarks import avvp
from xmodal.errors import ConfigError
from xmodal.tasks import av_segments
from xmodal.tasks.av_segments import SegmentDataset
from xmodal.tasks.base import TaskBundle


@dataclass
class DataConfig:
    root: str = "data/llp-scenes"
    eval_split: Literal["val", "test"] = "test"
    features: str | None = None  # a folder with the official vggish/, res152/ and r2plus1d_18/ .npy features
    cache: str | None = None


@dataclass
class ModelConfig:
    dim: int = 64
    ff_dim: int = 64
    heads: int = 1
    layers: int = 1
    dropout: float = 0.1
    acoustic: bool = True
    evidence: bool = False  # the encoders' class evidence, tied across classes (raw scene clips only)


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    for key in ("dim", "ff_dim", "heads", "layers"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if m.dim % m.heads:
        raise ConfigError(f"model.heads: must divide model.dim ({m.dim}), got {m.heads}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


def class_names(root: Path) -> list[str]:
    return list(avvp.read_avvp_classes(root / "classes.txt")) if (root / "classes.txt").is_file() \
        else list(avvp.AVVP_CLASSES)


def evidence_columns(classes: list[str]) -> list[int]:
    """Each class's column in the encoders' class evidence as the scene builder spells AVVP classes."""
    from xmodal.data.synth.scene_benchmarks_av import avvp_name

    return av_segments.evidence_columns(classes, avvp_name)


def _streams(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HAN's inputs from the raw-clip features: audio, the encoder's pooled vector of 8 frames per segment (the
    2-D stream, as LLP's 8-fps ResNet features) and the segment grid's per-channel mean and max."""
    v = clip["visual"]  # (T, 7, 7, C)
    return {"audio": clip["audio"], "visual": clip["frames"],
            "motion": torch.cat([v.mean((1, 2)), v.amax((1, 2))], -1), "acoustic": clip["acoustic"],
            "audio_classes": clip["audio_classes"], "visual_classes": clip["visual_classes"]}


def load_clips(d: DataConfig, filenames: list[str]) -> list[dict[str, torch.Tensor]]:
    root = Path(d.root)
    if d.features is None:
        videos = [root / "LLP_dataset" / "video" / f"{f}.mp4" for f in filenames]
        return [_streams(c) for c in av_segments.clip_features(videos, d.cache)]
    f = Path(d.features)
    return [{k: torch.from_numpy(v) for k, v in
             avvp.read_avvp_features(name, f / "vggish", f / "res152", f / "r2plus1d_18").items()}
            for name in filenames]


class AVVPModel(nn.Module):
    """The batch interface of :class:`HANParser`: ``batch -> {"video_prob", "audio_prob", "visual_prob",
    "frame_prob"}``."""

    def __init__(self, classes: list[str], dims: dict[str, int], visual_pool: int, m: ModelConfig) -> None:
        super().__init__()
        from xmodal.tasks.models.han import HANParser

        self.acoustic, self.evidence = m.acoustic, m.evidence
        self.net = HANParser(num_classes=len(classes), audio_dim=dims["audio"], visual_dim=dims["visual"],
                             motion_dim=dims["motion"], dim=m.dim, heads=m.heads, ff_dim=m.ff_dim, layers=m.layers,
                             dropout=m.dropout, visual_pool=visual_pool,
                             acoustic_dim=av_segments.ACOUSTIC_DIM if m.acoustic else 0,
                             evidence_dim=av_segments.EVIDENCE_FEATURES if m.evidence else 0,
                             evidence_columns=evidence_columns(classes) if m.evidence else None)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.net(batch["audio"], batch["visual"], batch["motion"],
                        batch.get("acoustic") if self.acoustic else None,
                        av_segments.stacked_evidence(batch) if self.evidence else None)


def objective(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """The reference's loss on the video-level labels (:func:`xmodal.tasks.models.han.han_loss`)."""
    from xmodal.tasks.models.han import han_loss

    return han_loss(outputs, batch["label"])


def predicted_grids(model: nn.Module, dataset: SegmentDataset) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The ``(classes, 10)`` audio and visual 0/1 grids of every clip, thresholded and filtered as main_avvp.py."""
    from xmodal.metrics.avvp import avvp_postprocess

    out = av_segments.predict_all(model, dataset)
    frames, video = out["frame_prob"].numpy(), out["video_prob"].numpy()
    grids = [avvp_postprocess(f[:, 0], f[:, 1], v) for f, v in zip(frames, video)]
    return [g[0] for g in grids], [g[1] for g in grids]


def _truth(dataset: SegmentDataset) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [e["gt_audio"].numpy() for e in dataset.extra], [e["gt_visual"].numpy() for e in dataset.extra]


def evaluate(model: nn.Module, dataset: SegmentDataset) -> dict[str, float]:
    from xmodal.metrics.avvp import avvp_scores

    return avvp_scores(*_truth(dataset), *predicted_grids(model, dataset))


def baselines(dataset: SegmentDataset, *, train_set: SegmentDataset) -> dict[str, dict[str, float]]:
    """Chance, majority and single-stream baselines (see the module docstring)."""
    from xmodal.metrics.avvp import avvp_scores

    gt_a, gt_v = _truth(dataset)
    shape = gt_a[0].shape  # (classes, segments)
    rng = np.random.default_rng(0)
    chance = [(rng.random(shape) < 0.5).astype(np.int64) for _ in gt_a]
    chance_v = [(rng.random(shape) < 0.5).astype(np.int64) for _ in gt_a]
    y_train = torch.stack(train_set.targets).numpy().astype(np.int64)  # (N, classes) video labels
    majority = np.zeros(shape, dtype=np.int64)
    majority[int(y_train.sum(0).argmax())] = 1
    table = {"chance": avvp_scores(gt_a, gt_v, chance, chance_v),
             "majority": avvp_scores(gt_a, gt_v, [majority] * len(gt_a), [majority] * len(gt_a))}
    segments = shape[1]
    for name, keys in (("audio_only", ["audio", "acoustic", "audio_classes"]),
                       ("visual_only", ["motion", "visual_classes"])):
        keys = [k for k in keys if k in train_set.clips[0]]

        def rows(ds: SegmentDataset, keys: list[str] = keys) -> np.ndarray:
            return torch.cat([torch.stack([c[k] for c in ds.clips]) for k in keys], -1).reshape(
                len(ds) * segments, -1).numpy()

        present = y_train.sum(0) > 0  # a class never seen in training is never predicted
        predict = av_segments.fit_segment_classifier(rows(train_set), np.repeat(y_train[:, present], segments, 0),
                                                     multilabel=True)
        prob = np.zeros((len(dataset) * segments, shape[0]))
        prob[:, present] = predict(rows(dataset))
        grids = [(p.T >= 0.5).astype(np.int64) for p in prob.reshape(len(dataset), segments, -1)]
        table[name] = avvp_scores(gt_a, gt_v, grids, grids)
    return table


def write_predictions(model: nn.Module, dataset: SegmentDataset, path: Path, *, classes: list[str]) -> Path:
    """``path/audio.csv`` and ``path/visual.csv``, the folder ``xmodal eval avvp --predictions`` reads."""
    audio, visual = predicted_grids(model, dataset)
    avvp.write_avvp_predictions(path, dict(zip(dataset.ids, audio)), dict(zip(dataset.ids, visual)), classes)
    return path


def build_data(cfg: dict[str, Any]) -> tuple[av_segments.SegmentDataset, av_segments.SegmentDataset, list[str]]:
    d, _ = _configs(cfg)
    root = Path(d.root)
    classes = class_names(root)
    index = {c: i for i, c in enumerate(classes)}

    def multi_hot(labels: tuple[str, ...]) -> torch.Tensor:
        y = torch.zeros(len(classes))
        y[[index[c] for c in labels]] = 1
        return y

    train_rows = avvp.read_avvp_weak(root / "AVVP_train.csv", classes)
    eval_rows = avvp.read_avvp_weak(root / f"AVVP_{d.eval_split}_pd.csv", classes)
    train_names, eval_names = [r.filename for r in train_rows], [r.filename for r in eval_rows]
    train_clips, eval_clips = load_clips(d, train_names), load_clips(d, eval_names)
    scaler = av_segments.Scaler.fit(train_clips)
    dense = {m: avvp.rasterize(avvp.read_avvp_events(root / f"AVVP_eval_{m}.csv", classes), eval_names, classes)
             for m in ("audio", "visual")}
    extra = [{"gt_audio": torch.from_numpy(dense["audio"][f]), "gt_visual": torch.from_numpy(dense["visual"][f])}
             for f in eval_names]
    train_set = av_segments.SegmentDataset(train_names, [scaler(c) for c in train_clips],
                                           [multi_hot(r.event_labels) for r in train_rows])
    eval_set = av_segments.SegmentDataset(eval_names, [scaler(c) for c in eval_clips],
                                          [multi_hot(r.event_labels) for r in eval_rows], extra=extra)
    return train_set, eval_set, classes


def build(cfg: dict[str, Any]) -> TaskBundle:
    d, m = _configs(cfg)
    train_set, eval_set, classes = build_data(cfg)
    first = train_set.clips[0]
    if m.acoustic and "acoustic" not in first:
        raise ConfigError("model.acoustic: the precomputed features hold no acoustic descriptors; set it false")
    if m.evidence and "audio_classes" not in first:
        raise ConfigError("model.evidence: the precomputed features hold no encoder class evidence; set it false")
    if m.evidence and max(evidence_columns(classes)) < 0:
        raise ConfigError("model.evidence: no class of the vocabulary is a scene class; set it false")
    segments = first["audio"].shape[0]
    dims = {k: first[k].shape[-1] for k in ("audio", "visual", "motion")}
    model = AVVPModel(classes, dims, first["visual"].shape[0] // segments, m)
    # TaskBundle takes evaluate over any Dataset; the trainer calls it on val_set only, this SegmentDataset
    evaluate_set = cast(Callable[[nn.Module, Dataset], dict[str, float]], evaluate)
    return TaskBundle(model=model, loss=objective, train_set=train_set, collate=av_segments.collate,
                      val_set=eval_set, evaluate=evaluate_set, primary="segment_type",
                      baselines=partial(baselines, train_set=train_set),
                      predict=partial(write_predictions, classes=classes), artifacts={"classes": classes},
                      split=d.eval_split)


def write_official_features(root: Path, cache_dir: str | None = None) -> Path:
    """Per-clip ``.npy`` features in LLP's layout, computed from ``LLP_dataset/video/*.mp4`` under ``root``:
    ``features/vggish/<filename>.npy`` ``(10, 128)``, ``features/res152/<filename>.npy`` ``(80, 64)`` (8 frames a
    second, as LLP's ResNet-152 stream) and ``features/r2plus1d_18/<filename>.npy`` ``(10, 128)``, float32. The
    streams are HAN's inputs from the sound and sprite encoders (:func:`_streams`; the third is the segment grid's
    mean and max where LLP has R(2+1)D-18); a recipe reads them with ``data.features=<root>/features
    model.acoustic=false``."""
    root = Path(root)
    videos = sorted((root / "LLP_dataset" / "video").glob("*.mp4"))
    if not videos:
        from xmodal.errors import DataError

        raise DataError("no clips (*.mp4) to compute features of", root / "LLP_dataset" / "video")
    out = root / "features"
    for video, clip in zip(videos, av_segments.clip_features(videos, cache_dir), strict=True):
        streams = _streams(clip)
        for folder, stream in (("vggish", "audio"), ("res152", "visual"), ("r2plus1d_18", "motion")):
            (out / folder).mkdir(parents=True, exist_ok=True)
            partial_path = out / folder / f".{video.stem}.partial.npy"
            np.save(partial_path, streams[stream].numpy().astype(np.float32))
            partial_path.replace(out / folder / f"{video.stem}.npy")
    return out
