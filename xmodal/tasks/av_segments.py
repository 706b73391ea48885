"""Per-segment audio, visual and acoustic features of 10-s clips, shared by the segment-level audio-visual tasks
(AVE, AVVP).

From raw media (an MP4 with an audio track, decoded with :func:`xmodal.data.io.read_video`), every 1-s segment
gets:

- ``audio`` ``(T, 128)``: the embedding of :class:`xmodal.data.synth.sound_encoder.SoundEncoder` (a CNN trained
  here on the vocabulary's training sounds, the stand-in for the benchmarks' AudioSet VGGish, 128-d as it) of
  each segment's 64-band log-mel patch (16 kHz, 1024-point FFT, hop 256);
- ``visual`` ``(T, 7, 7, 64)``: the ``7 x 7 x 64`` map of :class:`xmodal.data.synth.sprite_encoder.SpriteEncoder`
  (a CNN trained here on the vocabulary's sprites, the stand-in for the benchmarks' ImageNet VGG pool5, whose
  weights cannot be downloaded), averaged over the segment's frames: the grid keeps where things are, which
  attention needs, and its channels say what is there;
- ``frames`` ``(T * 8, 64)``: the encoder's pooled vector (its map's maximum over cells) of 8 frames evenly
  spaced in every segment, the analogue of the per-frame ResNet-152 features of LLP;
- ``acoustic`` ``(T, 9)``: :func:`xmodal.data.acoustic.segment_acoustic_features` (pitch, spectral shape,
  onsets);
- ``audio_classes`` and ``visual_classes`` ``(T, 23)``: the encoders' own class evidence over the vocabulary's
  sounding classes, in one order (:func:`class_evidence`): which classes the sound encoder hears (sigmoid) and
  which the sprite encoder sees in some cell (the cell's softmax, maximum over cells). Being aligned, their
  product says which class is both heard and seen, the question AVE asks; they stay probabilities
  (:class:`Scaler` leaves ``*_classes`` unscaled). :func:`stacked_evidence` gives the models both, and their
  product, per class; :func:`evidence_columns` finds a task's classes among them.

Every clip's features are cached with :class:`xmodal.transforms.cache.TransformCache`, keyed by the file's bytes,
the extraction parameters and the encoder's weights. :func:`standardise` scales each feature by statistics of the training split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from torch.utils.data import Dataset

from xmodal.errors import DataError

if TYPE_CHECKING:  # imported where used at run time: loading them pulls in the encoders' training code
    from xmodal.data.synth.sound_encoder import SoundEncoder
    from xmodal.data.synth.sprite_encoder import SpriteEncoder

SAMPLE_RATE = 16000
GRID = 7
FRAMES_PER_SEGMENT = 8  # LLP's 8-fps frame features
SEGMENTS = 10  # 1-s segments of a 10-s clip
PARAMS = {"version": 2, "segments": SEGMENTS, "sample_rate": SAMPLE_RATE, "audio": "sound_encoder",
          "grid": GRID, "visual": "sprite_encoder", "frames_per_segment": FRAMES_PER_SEGMENT}
AUDIO_DIM, ACOUSTIC_DIM = 2 * 64, 9
EVIDENCE_FEATURES = 3  # heard and seen, heard, seen
# probabilities in [0, 1] scaled to the size of logits, so that a linear evidence classifier reaches decisive
# logits within a short training, before the models' other paths have memorised the training clips
EVIDENCE_SCALE = 10.0


def _visual_segments(frames: np.ndarray, segments: int, encoder: SpriteEncoder) -> tuple[np.ndarray, np.ndarray]:
    """The segment-averaged encoder maps ``(T, 7, 7, C)`` and the pooled vectors of 8 evenly spaced frames per
    segment ``(T * 8, C)``."""
    from xmodal.data.synth.sprite_encoder import encode_frames

    out = encode_frames(encoder, frames)
    maps, pooled = out["map"], out["pooled"]
    edges = np.linspace(0, len(frames), segments + 1)
    grid = torch.stack([maps[int(round(a)): max(int(round(b)), int(round(a)) + 1)].mean(0)
                        for a, b in pairwise(edges)])
    picks = [min(int(a + (b - a) * (k + 0.5) / FRAMES_PER_SEGMENT), len(frames) - 1)
             for a, b in pairwise(edges) for k in range(FRAMES_PER_SEGMENT)]
    return grid.numpy(), pooled[picks].numpy()


Encoders: TypeAlias = "tuple[SoundEncoder, SpriteEncoder]"  # (sound, sprite)


def load_encoders() -> Encoders:
    """The sound and sprite encoders from the default cache (each trained there on first use)."""
    from xmodal.data.synth.sound_encoder import load_sound_encoder
    from xmodal.data.synth.sprite_encoder import load_sprite_encoder

    return load_sound_encoder(), load_sprite_encoder()


def encoders_key() -> str:
    """The identity of the two encoders' weights (their cache keys), part of every clip's feature key."""
    from xmodal.data.synth import sound_encoder, sprite_encoder

    return f"{sound_encoder.weights_key()}+{sprite_encoder.weights_key()}"


def extract_clip(path: Path, segments: int = 10, encoders: Encoders | None = None) -> dict[str, torch.Tensor]:
    """``{"audio", "visual", "frames", "acoustic"}`` of one clip (see the module docstring); ``encoders``
    (sound, sprite) default to :func:`load_encoders`."""
    from xmodal.data.acoustic import segment_acoustic_features
    from xmodal.data.io import read_video, resample
    from xmodal.data.synth.sound_encoder import encode_segments

    clip = read_video(path, with_audio=True)
    if clip.audio is None or clip.sample_rate is None:  # read_video sets both or neither
        raise DataError("the clip has no audio track", path)
    if len(clip.frames) == 0:
        raise DataError("the clip has no video frames", path)
    sound, sprite = encoders or load_encoders()
    mono = resample(clip.audio.mean(axis=0), int(clip.sample_rate), SAMPLE_RATE).astype(np.float32)
    grid, pooled = _visual_segments(clip.frames, segments, sprite)
    return {"audio": encode_segments(sound, mono, segments)["embedding"], "visual": torch.from_numpy(grid),
            "frames": torch.from_numpy(pooled),
            "acoustic": torch.from_numpy(segment_acoustic_features(mono, SAMPLE_RATE, segments))}


@torch.no_grad()
def class_evidence(clip: dict[str, torch.Tensor], encoders: Encoders) -> dict[str, torch.Tensor]:
    """``{"audio_classes", "visual_classes"}`` ``(T, 23)`` of one clip's unscaled ``audio`` and ``visual``
    features, from the encoders' classifiers, both over the vocabulary's sounding classes in its order."""
    from xmodal.data.synth.sound_encoder import SOUND_CLASSES
    from xmodal.data.synth.sprite_encoder import CLASS_NAMES

    sound, sprite = encoders
    seen = sprite.classifier(clip["visual"].permute(0, 3, 1, 2)).softmax(1).amax((2, 3))  # (T, classes)
    return {"audio_classes": sound.classifier(clip["audio"]).sigmoid(),
            "visual_classes": seen[:, [CLASS_NAMES.index(c) for c in SOUND_CLASSES]]}


def clip_features(paths: Sequence[Path], cache_dir: str | None = None) -> list[dict[str, torch.Tensor]]:
    """The features of every clip, from the cache when the file's bytes were seen before. The encoders are
    loaded only when a clip is not, from the default cache, where they are trained on first use: one set of
    weights per machine, whatever feature folder a recipe names."""
    from xmodal.transforms.cache import TransformCache, file_digest, make_key

    cache = TransformCache(cache_dir)
    weights = encoders_key()
    encoders: list[Encoders] = []

    def compute(path: Path) -> dict[str, torch.Tensor]:
        if not encoders:
            encoders.append(load_encoders())
        return extract_clip(path, SEGMENTS, encoders[0])

    out = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError("clip not found", path)
        key = make_key(file_digest(path), "av_segment_features", PARAMS, weights=weights)
        out.append(cache.get_or_compute(key, partial(compute, Path(path))))
    if out and not encoders:
        encoders.append(load_encoders())
    return [{**clip, **class_evidence(clip, encoders[0])} for clip in out]


def stacked_evidence(batch: dict[str, Any]) -> torch.Tensor:
    """``(N, T, 3, K)``: per vocabulary class, heard and seen (the product), heard, seen; scaled by
    ``EVIDENCE_SCALE``."""
    heard, seen = batch["audio_classes"], batch["visual_classes"]
    return EVIDENCE_SCALE * torch.stack([heard * seen, heard, seen], dim=2)


def evidence_columns(classes: Sequence[str], spell: Callable[[str], str]) -> list[int]:
    """Each class's column in the class evidence (the vocabulary's sounding classes, named by ``spell`` as the
    task's files spell them), -1 for a class without one (background, a class the vocabulary does not have)."""
    from xmodal.data.synth.sound_encoder import SOUND_CLASSES

    column = {spell(c): k for k, c in enumerate(SOUND_CLASSES)}
    return [column.get(c, -1) for c in classes]


@dataclass
class Scaler:
    """Per-channel mean and standard deviation of each feature stream (fitted on the training split); class
    probabilities (``*_classes``) are kept as they are."""

    stats: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @classmethod
    def fit(cls, clips: Sequence[dict[str, torch.Tensor]]) -> Scaler:
        stats = {}
        for name in (n for n in clips[0] if not n.endswith("_classes")):
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
