"""Spatio-temporal video grounding on HC-STVG-format data (v1 or v2 annotation layout), TubeDETR-style.

Data: the annotation JSON as distributed (``anno_v1/{train,test}.json`` or ``anno_v2/{trainv2,valv2}.json``;
read by :mod:`xmodal.data.benchmarks.hc_stvg`), the clips under ``<data.videos>/<folder>/<id>.mp4`` (found as
TubeDETR's preprocessing finds them) and candidate object tracks (``data.candidates``: JSON lines of
``{"id": <clip id>, "boxes": {"<track>": [[x0, y0, x1, y1] or null per frame]}}``, the layout of a scene
build's ``scenes.jsonl``, where they are every object's true box: an oracle detector and tracker). ``data.build``
(builder options) makes ``hc-stvg-scenes`` write them into ``data.root`` when they are missing.

Features, kept in the :mod:`xmodal.transforms` cache under the clip's bytes: the frames TubeDETR evaluates (5 fps
from ``img_num / 20``, at most 200, numbered as it numbers them; :func:`xmodal.metrics.stvg.hcstvg_frame_ids`),
and for each candidate on each such frame its pixels (a ``crop x crop`` resize of its box), its box and its
motion since the previous sampled frame, all as fractions of the frame. The sentence is the frozen MiniLM's
per-token states. Model: :class:`xmodal.nn.vl.TubeRanker` (tracks over time, then each frame's candidates with
the words, then one time-aligned query per frame), trained with TubeDETR's L1 + GIoU and start/end KL plus the
cross-entropy of the true candidate (:func:`xmodal.nn.vl.ranking_stvg_loss`). Per-frame boxes are ranked
candidate boxes: box regression from scratch is the other option (``model.regress: true``).

Evaluation: m_tIoU, m_vIoU, vIoU@0.3 and vIoU@0.5 in percent, as TubeDETR's ``hcstvg_eval.py``
(:func:`xmodal.metrics.stvg.stvg_metrics`). The predicted span is the (start, end) pair with start <= end that
maximises p(start) p(end), as TubeDETR's inference. Baselines on the same clips: ``static_box`` (the mean training
box held still over the mean training span), ``full_extent`` (the mean training box on every sampled frame) and
``chance`` (a uniformly random candidate's boxes over a uniformly random span, seed 0). Predictions: the file
``xmodal eval stvg`` reads, ``{"<key>": {"boxes": {"<frame>": [x1, y1, x2, y2]}}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
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

PRIMARY = "m_vIoU"
FEATURES_PER_CROP_PIXEL = 3
BOX_FEATURES = 9  # box (4), its motion since the previous sampled frame (4), and whether that motion is known


@dataclass
class DataConfig:
    root: str | None = None  # the folder of the annotation files; null: the data root's build of data.build
    videos: str = "video"
    candidates: str = "scenes.jsonl"
    build: dict[str, Any] | None = None  # hc-stvg-scenes options; build into root when files are missing
    train_file: str = "anno_v1/train.json"
    eval_file: str = "anno_v1/test.json"
    crop: int = 8  # candidate pixels: a crop x crop resize of its box
    max_tokens: int = 20
    cache: str | None = None  # transform cache directory; null: $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    dim: int = 64
    heads: int = 4
    track_depth: int = 1
    frame_depth: int = 1
    decoder_depth: int = 2
    dropout: float = 0.0
    regress: bool = False  # regress boxes from the queries instead of ranking the candidates
    rank_weight: float = 1.0
    sigma: float = 1.0  # frames of the start/end target's Gaussian (TubeDETR's default)


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.crop < 1 or d.max_tokens < 2:
        raise ConfigError("data: crop must be >= 1 and max_tokens >= 2")
    if m.dim % 2 or m.dim % m.heads:
        raise ConfigError(f"model.dim: {m.dim} must be even and a multiple of model.heads = {m.heads}")


# ------------------------------------------------------------------------------------------------ features
def read_candidates(path: Path) -> dict[str, list[list[list[float] | None]]]:
    """``{clip id: [track][frame] box or None}`` from JSON lines of ``{"id", "boxes": {track: [...]}}``."""
    if not path.is_file():
        raise DataError("candidate tracks are missing (JSON lines of {id, boxes})", source=path)
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out[str(row["id"])] = [row["boxes"][k] for k in sorted(row["boxes"], key=int)]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"line {n}: expected {{\"id\", \"boxes\": {{track: [box or null per frame]}}}} "
                            f"({exc})", source=path) from exc
    return out


def clip_features(path: Path, video: Any, tracks: list, crop: int, cache: Any) -> dict[str, torch.Tensor]:
    """Per sampled frame and candidate: ``features`` (T, K, F) float16, ``boxes`` (T, K, 4) pixel corners and
    ``mask`` (T, K) (on screen), over ``frame_ids`` (T,) = TubeDETR's sampled frames of the clip. Tracks never on
    a sampled frame are dropped."""
    from xmodal.metrics.stvg import hcstvg_frame_ids
    from xmodal.transforms.cache import file_digest, make_key

    frame_ids = hcstvg_frame_ids(video.img_num)
    if any(len(tr) < video.img_num for tr in tracks):
        raise DataError(f"{video.key}: a candidate track is shorter than the clip's {video.img_num} frames",
                        source=path)
    tracks = [tr for tr in tracks if any(tr[f] is not None for f in frame_ids)]
    key = make_key(file_digest(path), "stvg.candidates", {"crop": crop, "tracks": tracks, "frames": frame_ids})

    def compute() -> dict[str, torch.Tensor]:
        from PIL import Image

        from xmodal.data.io import read_video

        clip = read_video(path, with_audio=False)
        if len(clip.frames) < video.img_num - 1:
            raise DataError(f"{len(clip.frames)} frames decoded, the annotation says {video.img_num}", source=path)
        t, k = len(frame_ids), len(tracks)
        size = np.array([video.width, video.height, video.width, video.height], np.float32)
        pixels = np.zeros((t, k, crop * crop * FEATURES_PER_CROP_PIXEL), np.float32)
        geometry = np.zeros((t, k, BOX_FEATURES), np.float32)
        boxes = np.zeros((t, k, 4), np.float32)
        mask = np.zeros((t, k), bool)
        for i, f in enumerate(frame_ids):
            image = Image.fromarray(clip.frames[f])
            for j, tr in enumerate(tracks):
                if tr[f] is None:
                    continue
                x0, y0, x1, y1 = (float(v) for v in tr[f])
                patch = image.resize((crop, crop), Image.Resampling.BILINEAR, box=(x0, y0, max(x1, x0 + 1),
                                                                                   max(y1, y0 + 1)))
                pixels[i, j] = np.asarray(patch, np.float32).reshape(-1) / 255.0
                boxes[i, j], mask[i, j] = (x0, y0, x1, y1), True
                geometry[i, j, :4] = boxes[i, j] / size
                if i and mask[i - 1, j]:
                    geometry[i, j, 4:8] = 10.0 * (geometry[i, j, :4] - geometry[i - 1, j, :4])
                    geometry[i, j, 8] = 1.0
        feats = np.concatenate([pixels, geometry], axis=2)
        return {"features": torch.from_numpy(feats).half(), "boxes": torch.from_numpy(boxes),
                "mask": torch.from_numpy(mask), "frame_ids": torch.tensor(frame_ids)}

    return cache.get_or_compute(key, compute)


def _xyxy_to_cxcywh(box: torch.Tensor, w: float, h: float) -> torch.Tensor:
    x0, y0, x1, y1 = box.unbind(-1)
    return torch.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h], dim=-1)


class TubeDataset(Dataset):
    """One sample per annotated clip: ``{"id", "candidates" (T, K, F), "candidate_mask" (T, K), "candidate_boxes"
    (T, K, 4) normalised (cx, cy, w, h), "text" (L, 384), "text_mask", "time_mask" (T,), "boxes" (T, 4) the true
    box normalised, "span" (2,) first and last sampled frame of the tube (indices), "target" (T,) the candidate
    that matches the true box (IoU >= 0.5), -1 elsewhere}``."""

    def __init__(self, path: Path, root: Path, d: DataConfig, cache: Any) -> None:
        from xmodal.data.benchmarks.hc_stvg import read_hc_stvg, video_paths
        from xmodal.metrics.stvg import box_iou_xyxy

        self.videos = read_hc_stvg(path)
        if not self.videos:
            raise ConfigError(f"{path}: no clips")
        clips = video_paths(root / d.videos)
        tracks = read_candidates(root / d.candidates)
        self.items = []
        for v in self.videos:
            vid = v.key[:-4]
            if vid not in clips:
                raise DataError(f"clip {v.key} named by {path.name} is missing", source=root / d.videos)
            if vid not in tracks:
                raise DataError(f"no candidate tracks for clip {vid}", source=root / d.candidates)
            c = clip_features(clips[vid], v, tracks[vid], d.crop, cache)
            ids = c["frame_ids"].tolist()
            inside = [i for i, f in enumerate(ids) if v.st_frame <= f < v.tube_end_frame]
            if not inside:
                raise DataError(f"{v.key}: no sampled frame lies in the tube [{v.st_frame}, {v.tube_end_frame})",
                                source=path)
            true = torch.zeros(len(ids), 4)
            target = torch.full((len(ids),), -1, dtype=torch.long)
            for i in inside:
                x, y, w, h = v.bbox[ids[i] - v.st_frame]
                gt = (x, y, x + w, y + h)
                true[i] = _xyxy_to_cxcywh(torch.tensor(gt), v.width, v.height)
                ious = [box_iou_xyxy(gt, b) if m else 0.0 for b, m in zip(c["boxes"][i].tolist(), c["mask"][i])]
                if ious and max(ious) >= 0.5:
                    target[i] = int(np.argmax(ious))
            self.items.append({**c, "true": true, "target": target, "span": torch.tensor([inside[0], inside[-1]]),
                               "cxcywh": _xyxy_to_cxcywh(c["boxes"], v.width, v.height)})
        self.tokens, self.mask = xfields.cached_token_features([v.caption for v in self.videos], d.max_tokens, cache)

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def feature_dim(self) -> int:
        return int(self.items[0]["features"].shape[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        return {"id": i, "candidates": it["features"].float(), "candidate_mask": it["mask"],
                "candidate_boxes": it["cxcywh"], "text": self.tokens[i].float(), "text_mask": self.mask[i],
                "time_mask": torch.ones(len(it["frame_ids"]), dtype=torch.bool), "boxes": it["true"],
                "span": it["span"], "target": it["target"]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Pads frames (T) and candidates (K) to the batch's largest; padding is masked out (target -1)."""
    t = max(s["time_mask"].shape[0] for s in samples)
    k = max(max(s["candidate_mask"].shape[1] for s in samples), 1)
    batch: dict[str, Any] = {"id": torch.tensor([s["id"] for s in samples])}
    for name in ("candidates", "candidate_mask", "candidate_boxes"):
        batch[name] = torch.stack([nn.functional.pad(s[name], (0, 0) * (s[name].dim() - 2) +
                                                     (0, k - s[name].shape[1], 0, t - s[name].shape[0]))
                                   for s in samples])
    for name, value in (("time_mask", False), ("boxes", 0.0), ("target", -1)):
        batch[name] = torch.stack([nn.functional.pad(s[name], (0, 0) * (s[name].dim() - 1) +
                                                     (0, t - s[name].shape[0]), value=value) for s in samples])
    for name in ("text", "text_mask", "span"):
        batch[name] = torch.stack([s[name] for s in samples])
    return batch


# --------------------------------------------------------------------------------------------------- model
class TubeModel(nn.Module):
    """``batch -> {"scores", "sted"[, "boxes"]}`` from :class:`xmodal.nn.vl.TubeRanker`."""

    def __init__(self, m: ModelConfig, candidate_dim: int, text_dim: int = 384, max_tokens: int = 64) -> None:
        super().__init__()
        from xmodal.nn.vl import TubeRanker

        self.ranker = TubeRanker(candidate_dim, text_dim, dim=m.dim, track_depth=m.track_depth,
                                 frame_depth=m.frame_depth, decoder_depth=m.decoder_depth, heads=m.heads,
                                 max_tokens=max_tokens, dropout=m.dropout, regress=m.regress)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.ranker(batch["candidates"], batch["candidate_mask"], batch["text"], batch["text_mask"],
                           batch["time_mask"])


def make_loss(m: ModelConfig):
    from xmodal.nn.vl import ranking_stvg_loss

    def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """TubeDETR's 5 L1 + 2 GIoU + 10 start/end KL, plus the candidate cross-entropy."""
        return ranking_stvg_loss(outputs, batch["candidate_boxes"], batch["target"], batch["boxes"], batch["span"],
                                 batch["time_mask"], rank_weight=m.rank_weight, sigma=m.sigma)["loss"]

    return loss


# ---------------------------------------------------------------------------------------------- evaluation
def best_span(sted: torch.Tensor, time_mask: torch.Tensor) -> tuple[int, int]:
    """The (start, end) frame indices, start <= end, maximising p(start) p(end) (TubeDETR's inference)."""
    n = int(time_mask.sum())
    p = sted[:n].softmax(0)
    joint = torch.triu(p[:, 0, None] * p[None, :, 1])
    flat = int(joint.argmax())
    return flat // n, flat % n


def predicted_tubes(model: nn.Module, dataset: TubeDataset, batch_size: int = 16) -> dict[str, dict[int, list]]:
    """``{key: {frame number: [x1, y1, x2, y2]}}`` of every clip: the best candidate's box (or the regressed
    box) on every sampled frame of the predicted span."""
    from xmodal.nn.heads import box_cxcywh_to_xyxy

    out: dict[str, dict[int, list]] = {}
    was = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            idx = list(range(start, min(start + batch_size, len(dataset))))
            batch = collate([dataset[i] for i in idx])
            res = model(batch)
            for row, i in enumerate(idx):
                v, it = dataset.videos[i], dataset.items[i]
                s, e = best_span(res["sted"][row], batch["time_mask"][row])
                boxes: dict[int, list] = {}
                for f in range(s, e + 1):
                    frame = int(it["frame_ids"][f])
                    if "boxes" in res:
                        x0, y0, x1, y1 = box_cxcywh_to_xyxy(res["boxes"][row, f]).tolist()
                        boxes[frame] = [x0 * v.width, y0 * v.height, x1 * v.width, y1 * v.height]
                    elif it["mask"].shape[1] and bool(it["mask"][f].any()):
                        k = int(res["scores"][row, f, : it["mask"].shape[1]].argmax())
                        boxes[frame] = it["boxes"][f, k].tolist()
                out[v.key] = boxes
    model.train(was)
    return out


def _score(dataset: TubeDataset, tubes: dict[str, dict[int, list]]) -> dict[str, float]:
    from xmodal.metrics.stvg import hcstvg_targets, stvg_metrics

    return stvg_metrics(hcstvg_targets(dataset.videos), tubes)


def evaluate(model: nn.Module, dataset: TubeDataset, batch_size: int = 16) -> dict[str, float]:
    """m_tIoU, m_vIoU, vIoU@0.3 and vIoU@0.5 in percent, as ``xmodal eval stvg`` scores them."""
    return _score(dataset, predicted_tubes(model, dataset, batch_size))


def baselines(dataset: TubeDataset, *, train_set: TubeDataset) -> dict[str, dict[str, float]]:
    """The static-box tube (mean training box over the mean training span), the full-extent tube (mean
    training box on every sampled frame) and chance (a random candidate over a random span, seed 0)."""
    fractions, corners = [], []
    for v in train_set.videos:
        fractions.append((v.st_frame / v.img_num, v.tube_end_frame / v.img_num))
        corners += [(x / v.width, y / v.height, (x + w) / v.width, (y + h) / v.height) for x, y, w, h in v.bbox]
    start, end = np.mean(fractions, axis=0)
    mean_box = np.mean(corners, axis=0)
    rng = np.random.default_rng(0)
    static, full, chance = {}, {}, {}
    for v, it in zip(dataset.videos, dataset.items):
        ids = it["frame_ids"].tolist()
        box = (mean_box * [v.width, v.height, v.width, v.height]).tolist()
        full[v.key] = {f: box for f in ids}
        static[v.key] = {f: box for f in ids if start * v.img_num <= f < end * v.img_num}
        a, b = sorted(rng.integers(0, len(ids), 2).tolist())
        k = int(rng.integers(0, max(it["mask"].shape[1], 1)))
        chance[v.key] = {ids[f]: it["boxes"][f, k].tolist() for f in range(a, b + 1)
                         if it["mask"].shape[1] and bool(it["mask"][f, k])}
    return {"static_box": _score(dataset, static), "full_extent": _score(dataset, full),
            "chance": _score(dataset, chance)}


def write_predictions(model: nn.Module, dataset: TubeDataset, path: Path, batch_size: int = 16) -> Path:
    """``{"<key>": {"boxes": {"<frame>": [x1, y1, x2, y2]}}}``, as ``xmodal eval stvg`` reads it."""
    tubes = predicted_tubes(model, dataset, batch_size)
    doc = {key: {"boxes": {str(f): [round(c, 3) for c in box] for f, box in boxes.items()}}
           for key, boxes in tubes.items()}
    return pipeline.write_json(path, doc)


# ----------------------------------------------------------------------------------------------- the task
def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    from xmodal.transforms.cache import TransformCache

    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    root = pipeline.dataset_root(d.root, "hc-stvg-scenes", d.build, [d.train_file, d.eval_file, d.candidates])
    cache = TransformCache(d.cache)
    train_set = TubeDataset(root / d.train_file, root, d, cache)
    val_set = TubeDataset(root / d.eval_file, root, d, cache)
    bs = pipeline.eval_batch_size(cfg)
    return TaskBundle(model=TubeModel(m, train_set.feature_dim, max_tokens=d.max_tokens), loss=make_loss(m),
                      train_set=train_set, collate=collate, val_set=val_set,
                      evaluate=partial(evaluate, batch_size=bs), primary=PRIMARY,
                      baselines=partial(baselines, train_set=train_set),
                      predict=partial(write_predictions, batch_size=bs), split=Path(d.eval_file).stem)
