"""Temporal activity localisation by language on Charades-STA-format data, with a proposal-free boundary
regressor.

Data: ``charades_sta_train.txt`` / ``charades_sta_test.txt`` as distributed (``vid start end##sentence``; read
by :mod:`xmodal.data.benchmarks.charades_sta`) and the videos ``<data.videos>/<vid>.mp4``. ``data.build``
(builder options) makes ``charades-sta-scenes`` write them into ``data.root`` (null: a folder of the data root
named by the options) when they are missing.

Features: every video decoded once with :func:`xmodal.data.io.read_video` (``data.steps`` uniformly spaced
frames, resized to ``data.frame_size``, and its audio track) and kept in the :mod:`xmodal.transforms` cache under
the file's bytes. A step's feature is its frame's pixels, the difference to the previous frame (motion) and the
mean log-mel of the audio within the step (sounding actions). The query is the frozen MiniLM's per-token states.
Model: :class:`xmodal.nn.vl.BoundaryRegressor` (clips attend to the words, a BiGRU, attention pooling, a
(start, end) head), trained with :func:`xmodal.nn.vl.boundary_loss` on fractions of the video.

Evaluation: TALL's R@{1,5} at IoU {0.3, 0.5, 0.7} and the top-1 mIoU, in percent
(:func:`xmodal.metrics.temporal.temporal_grounding_metrics`); one moment per query, so R@5 = R@1. Baselines on
the same queries: ``prior`` (the training moments' mean start and end fractions, the moment-position prior) and
``chance`` (one uniformly random segment per query, seeded). Predictions: the list ``xmodal eval
temporal-grounding`` reads, ``{"video", "segments": [[start, end]], "scores": [1.0]}`` per annotation line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError, DataError
from xmodal.tasks import fields as xfields
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle

PRIMARY = "R@1,IoU=0.5"


@dataclass
class DataConfig:
    root: str | None = None  # the folder of the annotation files; null: the data root's build of data.build
    videos: str = "Charades_v1"
    build: dict[str, Any] | None = None  # charades-sta-scenes options; build into root when files are missing
    train_file: str = "charades_sta_train.txt"
    eval_file: str = "charades_sta_test.txt"
    steps: int = 32  # frames (time steps) per video
    frame_size: list[int] = field(default_factory=lambda: [16, 16])  # height, width
    n_mels: int = 32
    max_tokens: int = 24
    cache: str | None = None  # transform cache directory; null: $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    dim: int = 64
    heads: int = 4
    dropout: float = 0.0
    iou_weight: float = 1.0


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.steps < 2 or len(d.frame_size) != 2 or min(d.frame_size) < 1:
        raise ConfigError("data: steps must be >= 2 and frame_size two positive sizes")
    if m.dim % 2 or m.dim % m.heads:
        raise ConfigError(f"model.dim: {m.dim} must be even and a multiple of model.heads = {m.heads}")


# ------------------------------------------------------------------------------------------------ features
def video_features(path: Path, d: DataConfig, cache: Any) -> tuple[torch.Tensor, float]:
    """``(steps, feature_dim)`` step features of one video and its duration in seconds (cached)."""
    from xmodal.transforms.cache import file_digest, make_key

    params = {"steps": d.steps, "frame_size": list(d.frame_size), "n_mels": d.n_mels}
    key = make_key(file_digest(path), "temporal_grounding.steps", params)

    def compute() -> dict[str, torch.Tensor]:
        from PIL import Image

        from xmodal.data.io import read_video

        clip = read_video(path, num_frames=d.steps, with_audio=True)
        h, w = d.frame_size
        frames = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BILINEAR))
                           for f in clip.frames]).astype(np.float32) / 255.0  # (T, h, w, 3)
        pixels = torch.from_numpy(frames).reshape(d.steps, -1)
        motion = torch.cat([torch.zeros_like(pixels[:1]), pixels[1:] - pixels[:-1]])
        audio = torch.zeros(d.steps, d.n_mels)
        if clip.audio is not None and clip.audio.shape[1]:
            rate = int(clip.sample_rate or 16000)
            hop = rate // 50
            mel = xfields.mel_module(rate, 4 * hop, hop, d.n_mels, rate / 2.0)
            spec = mel(torch.from_numpy(np.ascontiguousarray(clip.audio.mean(0))).float()[None])[0].T  # (frames, mels)
            bounds = np.linspace(0, spec.shape[0], d.steps + 1).astype(int)
            audio = torch.stack([spec[a:max(b, a + 1)].mean(0) for a, b in pairwise(bounds)]) / 10.0
        return {"features": torch.cat([pixels, motion, audio], dim=1).half(),
                "duration": torch.tensor(float(clip.duration), dtype=torch.float64)}

    found = cache.get_or_compute(key, compute)
    return found["features"], float(found["duration"])


class MomentDataset(Dataset):
    """Samples ``{"id": line index, "clips": (T, F), "text": (L, 384), "text_mask": (L,), "moment": (2,)}``; the
    moment is the annotated (start, end) as fractions of the video, clipped to [0, 1]."""

    def __init__(self, path: Path, video_dir: Path, d: DataConfig, cache: Any) -> None:
        from xmodal.data.benchmarks.charades_sta import read_charades_sta

        self.queries = read_charades_sta(path)
        if not self.queries:
            raise ConfigError(f"{path}: no queries")
        self.videos = sorted({q.video for q in self.queries})
        slot = {v: k for k, v in enumerate(self.videos)}
        feats, self.durations = [], []
        for v in self.videos:
            f, duration = video_features(video_dir / f"{v}.mp4", d, cache) if (video_dir / f"{v}.mp4").is_file() \
                else (None, 0.0)
            if f is None:
                raise DataError(f"video {v}.mp4 named by {path.name} is missing", source=video_dir / f"{v}.mp4")
            feats.append(f)
            self.durations.append(duration)
        self.clips = torch.stack(feats)
        self.video_of = [slot[q.video] for q in self.queries]
        self.tokens, self.mask = xfields.cached_token_features([q.sentence for q in self.queries], d.max_tokens, cache)

    def __len__(self) -> int:
        return len(self.queries)

    def duration(self, i: int) -> float:
        return self.durations[self.video_of[i]]

    def __getitem__(self, i: int) -> dict[str, Any]:
        q, duration = self.queries[i], self.duration(i)
        moment = torch.tensor([q.start / duration, q.end / duration], dtype=torch.float32).clamp(0, 1)
        return {"id": i, "clips": self.clips[self.video_of[i]].float(), "text": self.tokens[i].float(),
                "text_mask": self.mask[i], "moment": moment}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    return default_collate(samples)


# --------------------------------------------------------------------------------------------------- model
class MomentModel(nn.Module):
    """``batch -> {"moment": (b, 2)}`` (start, end) fractions from :class:`xmodal.nn.vl.BoundaryRegressor`."""

    def __init__(self, m: ModelConfig, video_dim: int, text_dim: int = 384) -> None:
        super().__init__()
        from xmodal.nn.vl import BoundaryRegressor

        self.regressor = BoundaryRegressor(video_dim=video_dim, text_dim=text_dim, dim=m.dim, heads=m.heads,
                                           dropout=m.dropout)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"moment": self.regressor(batch["clips"], batch["text"], word_mask=batch["text_mask"])}


def make_loss(m: ModelConfig):
    from xmodal.nn.vl import boundary_loss

    def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Smooth L1 on the (start, end) fractions plus (1 - tIoU)."""
        return boundary_loss(outputs["moment"], batch["moment"], m.iou_weight)["loss"]

    return loss


# ---------------------------------------------------------------------------------------------- evaluation
def _seconds(dataset: MomentDataset, fractions: list[list[float]]) -> list[list[float]]:
    return [[s * dataset.duration(i), e * dataset.duration(i)] for i, (s, e) in enumerate(fractions)]


def predicted_moments(model: nn.Module, dataset: MomentDataset, batch_size: int = 256) -> list[list[float]]:
    """The top-1 [start, end] in seconds of every query, in annotation order."""
    out = pipeline.outputs_all(model, dataset, collate, batch_size)
    return _seconds(dataset, out["moment"].tolist())


def _score(dataset: MomentDataset, moments: list[list[float]]) -> dict[str, float]:
    from xmodal.metrics.temporal import temporal_grounding_metrics

    return temporal_grounding_metrics([(q.start, q.end) for q in dataset.queries], [[m] for m in moments])


def evaluate(model: nn.Module, dataset: MomentDataset, batch_size: int = 256) -> dict[str, float]:
    """TALL's R@1/5 at IoU 0.3/0.5/0.7 and mIoU, in percent."""
    return _score(dataset, predicted_moments(model, dataset, batch_size))


def baselines(dataset: MomentDataset, *, train_set: MomentDataset) -> dict[str, dict[str, float]]:
    """The moment-position prior of the training queries and uniformly random segments (seed 0)."""
    prior = torch.stack([train_set[i]["moment"] for i in range(len(train_set))]).mean(0).tolist()
    draws = np.sort(np.random.default_rng(0).uniform(0, 1, (len(dataset), 2)), axis=1).tolist()
    return {"prior": _score(dataset, _seconds(dataset, [prior] * len(dataset))),
            "chance": _score(dataset, _seconds(dataset, draws))}


def write_predictions(model: nn.Module, dataset: MomentDataset, path: Path, batch_size: int = 256) -> Path:
    """One entry per annotation line, ``{"video", "segments": [[start, end]], "scores": [1.0]}``."""
    moments = predicted_moments(model, dataset, batch_size)
    doc = [{"video": q.video, "segments": [[round(s, 4), round(e, 4)]], "scores": [1.0]}
           for q, (s, e) in zip(dataset.queries, moments)]
    return pipeline.write_json(path, doc)


# ----------------------------------------------------------------------------------------------- the task
def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    from xmodal.transforms.cache import TransformCache

    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    root = pipeline.dataset_root(d.root, "charades-sta-scenes", d.build, [d.train_file, d.eval_file])
    cache = TransformCache(d.cache)
    train_set = MomentDataset(root / d.train_file, root / d.videos, d, cache)
    val_set = MomentDataset(root / d.eval_file, root / d.videos, d, cache)
    bs = pipeline.eval_batch_size(cfg)
    return TaskBundle(model=MomentModel(m, video_dim=train_set.clips.shape[2]), loss=make_loss(m),
                      train_set=train_set, collate=collate, val_set=val_set,
                      evaluate=partial(evaluate, batch_size=bs), primary=PRIMARY,
                      baselines=partial(baselines, train_set=train_set),
                      predict=partial(write_predictions, batch_size=bs), split=Path(d.eval_file).stem)
