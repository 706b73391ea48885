"""Per-segment audio, visual and acoustic features of 10-s clips, shared by the segment-level audio-visual tasks
(AVE, AVVP).

From raw media (an MP4 with an audio track, decoded with :func:`xmodal.data.io.read_video`), every 1-s segment
gets:

- ``audio`` ``(T, 128)``: the mean and standard deviation over the segment of a 64-band log-mel spectrogram
  (librosa, 16 kHz, 1024-point FFT, hop 256), the size of the VGGish embedding the benchmarks distribute;
- ``visual`` ``(T, 7, 7, 48)``: the frames average-pooled to 28 x 28 and cut into the 7 x 7 grid of the
  benchmarks' VGG pool5 maps, each cell's 4 x 4 RGB pixels as its 48 channels, averaged over the segment's
  frames (no pretrained CNN can be downloaded here; the grid keeps where things are, which attention needs);
- ``acoustic`` ``(T, 9)``: :func:`xmodal.data.acoustic.segment_acoustic_features` (pitch, spectral shape,
  onsets).

Every clip's features are cached with :class:`xmodal.transforms.cache.TransformCache`, keyed by the file's bytes
and the extraction parameters. :func:`standardise` scales each feature by statistics of the training split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from xmodal.errors import DataError

SAMPLE_RATE = 16000
GRID = 7
CELL = 4  # pixels per cell side after pooling: 28 x 28 frames
PARAMS = {"version": 1, "segments": 10, "sample_rate": SAMPLE_RATE, "n_mels": 64, "n_fft": 1024, "hop": 256,
          "grid": GRID, "cell": CELL}
AUDIO_DIM, VISUAL_DIM, ACOUSTIC_DIM = 2 * 64, 3 * CELL * CELL, 9


def _audio_segments(mono: np.ndarray, segments: int) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=mono, sr=SAMPLE_RATE, n_fft=PARAMS["n_fft"], hop_length=PARAMS["hop"],
                                         n_mels=PARAMS["n_mels"])
    log_mel = np.log(mel + 1e-6).T  # (frames, mels)
    edges = np.linspace(0, log_mel.shape[0], segments + 1).round().astype(int)
    return np.stack([np.concatenate([log_mel[a:b].mean(0), log_mel[a:b].std(0)])
                     for a, b in pairwise(edges)]).astype(np.float32)


def _visual_segments(frames: np.ndarray, segments: int) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (F, 3, H, W)
    x = torch.nn.functional.adaptive_avg_pool2d(x, GRID * CELL)  # (F, 3, 28, 28)
    cells = x.reshape(-1, 3, GRID, CELL, GRID, CELL).permute(0, 2, 4, 1, 3, 5).reshape(-1, GRID, GRID, VISUAL_DIM)
    edges = np.linspace(0, cells.shape[0], segments + 1).round().astype(int)
    return torch.stack([cells[a:max(b, a + 1)].mean(0) for a, b in pairwise(edges)]).numpy()


def extract_clip(path: Path, segments: int = 10) -> dict[str, torch.Tensor]:
    """``{"audio", "visual", "acoustic"}`` of one clip (see the module docstring)."""
    from xmodal.data.acoustic import segment_acoustic_features
    from xmodal.data.io import read_video, resample

    clip = read_video(path, with_audio=True)
    if clip.audio is None:
        raise DataError("the clip has no audio track", path)
    mono = resample(clip.audio.mean(axis=0), int(clip.sample_rate), SAMPLE_RATE).astype(np.float32)
    return {"audio": torch.from_numpy(_audio_segments(mono, segments)),
            "visual": torch.from_numpy(_visual_segments(clip.frames, segments)),
            "acoustic": torch.from_numpy(segment_acoustic_features(mono, SAMPLE_RATE, segments))}


def clip_features(paths: Sequence[Path], cache_dir: str | None = None) -> list[dict[str, torch.Tensor]]:
    """The features of every clip, from the cache when the file's bytes were seen before."""
    from xmodal.transforms.cache import TransformCache, file_digest, make_key

    cache = TransformCache(cache_dir)
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError("clip not found", path)
        key = make_key(file_digest(path), "av_segment_features", PARAMS)
        out.append(cache.get_or_compute(key, lambda p=path: extract_clip(Path(p), PARAMS["segments"])))
    return out


@dataclass
class Scaler:
    """Per-channel mean and standard deviation of each feature stream (fitted on the training split)."""

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def fit(cls, clips: Sequence[dict[str, torch.Tensor]]) -> Scaler:
        stats = {}
        for name in clips[0]:
            x = torch.stack([c[name] for c in clips]).float()
            flat = x.reshape(-1, x.shape[-1])
            stats[name] = (flat.mean(0), flat.std(0).clamp_min(1e-4))
        return cls(stats)

    def __call__(self, clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (v.float() - self.stats[k][0]) / self.stats[k][1] if k in self.stats else v
                for k, v in clip.items()}


class SegmentDataset(Dataset):
    """Samples ``{"id", "audio", "visual", "acoustic", <target>: tensor}`` of clips already standardised."""

    def __init__(self, ids: Sequence[str], clips: Sequence[dict[str, torch.Tensor]],
                 targets: Sequence[torch.Tensor], target: str = "label",
                 extra: Sequence[dict[str, Any]] | None = None) -> None:
        if not (len(ids) == len(clips) == len(targets)):
            raise DataError(f"{len(ids)} ids, {len(clips)} clips and {len(targets)} targets")
        self.ids, self.clips, self.targets, self.target = list(ids), list(clips), list(targets), target
        self.extra = list(extra) if extra is not None else [{} for _ in ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"id": self.ids[index], **self.clips[index], self.target: self.targets[index], **self.extra[index]}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack every tensor field (all clips have the same number of segments); keep the ids as a list."""
    batch: dict[str, Any] = {"id": [s["id"] for s in samples]}
    for key, value in samples[0].items():
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([s[key] for s in samples])
    return batch


@torch.no_grad()
def predict_all(model: torch.nn.Module, dataset: Dataset, batch_size: int = 64) -> dict[str, Any]:
    """The model's outputs over ``dataset`` (``pipeline.outputs_all`` with this module's collate)."""
    from xmodal.tasks.pipeline import outputs_all

    return outputs_all(model, dataset, collate, batch_size)


def fit_segment_classifier(x_train: np.ndarray, y_train: np.ndarray,
                           multilabel: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A per-segment logistic regression (scikit-learn; multinomial, or one-vs-rest on 0/1 columns when
    ``multilabel``) on one stream's features: the single-modality baselines. Returns ``features -> predicted
    class index`` (multilabel: ``features -> (rows, classes) probabilities``). BLAS runs on torch's thread count
    (the recipe's ``train.threads``): more threads than cores slow it down many times on a shared machine."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(torch.get_num_threads()):
        if multilabel:
            clf = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(x_train, y_train)
            return clf.predict_proba
        return LogisticRegression(max_iter=1000).fit(x_train, y_train).predict
