"""Visual sound source localisation on VGG-SS or Flickr-SoundNet: a heatmap of where the sound comes from in the
clip's annotated frame, scored with the LVS test code's cIoU and AUC (:mod:`xmodal.metrics.localization`).

Data (``data.root``), as the benchmarks distribute them (read with :mod:`xmodal.data.benchmarks.vggss` and
:mod:`~xmodal.data.benchmarks.flickr_soundnet`), with the frames and audio extracted as LVS expects them,
``frames/<id>.jpg`` and ``audio/<id>.wav``:

- VGG-SS: ``vggss.json`` (the test boxes), and ``vggss_train.json`` / ``vggss_val.json`` in the same layout for
  the other splits (the scene builder writes them; the real benchmark trains on VGGSound clips listed in a file
  of that layout, boxes unused unless the supervised variant is chosen);
- Flickr-SoundNet: ``train.txt`` / ``val.txt`` / ``test.txt`` id lists and ``Annotations/<id>.xml`` (several
  annotators, the consensus map) for the evaluated split (test);
- either: ``silent.json`` (``{split: [ids]}``, optional) names silent-frame negatives, clips in which nothing
  sounds: they are trained on as negatives and, in the evaluated split, scored by ``silent_auc``, the ROC AUC
  (percent) with which the map's peak (the model's ``score``) tells sounding from silent clips.

Neither benchmark distributes precomputed features, so every sample is decoded from its files: the frame
resized to ``data.image_size`` (RGB in [0, 1]), the log-mel spectrogram (64 bands, 16 kHz) of
``data.audio_seconds`` around the frame's time (the clip's middle) and its acoustic descriptors
(:func:`xmodal.data.acoustic.segment_acoustic_features` on three sub-segments, mean and max: 18 values); all
cached by content with :class:`xmodal.transforms.cache.TransformCache`.

Models (``model.name``): ``lvs`` (:class:`xmodal.tasks.models.lvs.LVSNet`, contrastive with the hard-negative
trimap, epsilon 0.65 / 0.4, tau 0.03, temperature 0.07 as the paper) and ``attention``
(:class:`xmodal.tasks.models.attention_localiser.AttentionLocaliser`, Senocak et al., ``model.mode``
unsupervised | supervised | semi), each with the acoustic branch when ``model.acoustic``. Their encoders
(injected): ``model.visual: sprite``, the frozen sprite encoder's per-cell class probabilities on its 7 x 7 grid
(:mod:`xmodal.data.synth.sprite_encoder`, the stand-in for the papers' ImageNet trunks) through a learned 1 x 1
projection, or ``cnn``, a small CNN on the frame trained end to end; ``model.audio: mlp``, an MLP on the
log-mel's per-band mean and deviation, ``cnn`` on the spectrogram, or ``sound``, an MLP on the frozen sound
encoder's per-second embeddings (:mod:`xmodal.data.synth.sound_encoder`, the stand-in for VGGish).

The written heatmap: the model's map resized to 224 x 224 as the LVS test does (OpenCV bilinear), then every
value below ``model.floor`` of the way from its minimum to its maximum set to the minimum. LVS binarises at the
median, which on frames whose sounding object covers far less than half the image can only succeed for maps that
are flat over more than half of it; the floor makes that explicit. ``model.floor: null`` chooses it on the
validation split (``vggss_val.json``; the best AUC over 0.1, 0.2, ..., 0.9, reported as ``floor``), never on the
evaluated one; the random baseline's map gets the same floor, the other baselines are box maps.

Baselines on the held-out split, through the same writer and metric: ``centre`` (a box of the training boxes'
mean size at the centre; a quarter of the image without training boxes), ``random`` (uniform noise, seeded),
and, where the builder's ``scenes.jsonl`` names every object's box, ``largest_object`` (the box of the largest
object, a saliency oracle) and ``objectness`` (the union of all objects' boxes, audio-agnostic).

Recipe sections: ``data: {root, benchmark, eval_split, image_size, audio_seconds, cache}`` and ``model: {name,
visual, audio, hidden, visual_hidden, channels, audio_channels, acoustic, floor, mode, temperature, embed_dim,
supervised_weight, silent_weight, trimap, hard_negative, tau_plus}``; ``model.tau_plus > 0`` trains LVS with the
debiased contrastive estimator instead of InfoNCE (:func:`xmodal.tasks.models.lvs.debiased_nce`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.data.benchmarks import flickr_soundnet, vggss
from xmodal.errors import ConfigError, DataError
from xmodal.metrics.localization import (
    LVS_SIZE,
    binarize_lvs,
    ciou,
    flickr_gt_map,
    localization_scores,
    resize_linear,
    vggss_gt_map,
)
from xmodal.tasks.av_segments import collate
from xmodal.tasks.base import TaskBundle

SAMPLE_RATE = 16000
FRAME_TIME = 5.0  # the annotated frame of both benchmarks: the middle of the 10-s clip
VGGSS_FILES = {"train": "vggss_train.json", "val": "vggss_val.json", "test": "vggss.json"}
PARAMS = {"version": 1, "n_mels": 64, "n_fft": 1024, "hop": 256, "acoustic_parts": 3}
ACOUSTIC_DIM = 18


@dataclass
class DataConfig:
    root: str = "data/vggss-scenes"
    benchmark: Literal["auto", "vggss", "flickr"] = "auto"
    eval_split: Literal["val", "test"] = "test"
    image_size: int = 128
    audio_seconds: float = 3.0
    cache: str | None = None  # feature cache folder; default $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    name: Literal["lvs", "attention"] = "lvs"
    visual: Literal["sprite", "cnn"] = "sprite"  # frozen sprite-encoder maps + a learned projection, or a CNN
    # an MLP on the log-mel's per-band mean and deviation, a CNN on it, or an MLP on the frozen sound encoder's
    # embeddings
    audio: Literal["mlp", "cnn", "sound"] = "mlp"
    hidden: int = 128  # the audio MLP's hidden width
    visual_hidden: int = 0  # the projection's hidden width (0: one linear 1 x 1 convolution)
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    audio_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    acoustic: bool = True
    floor: float | None = None  # None: chosen on the validation split (see the module docstring)
    mode: Literal["unsupervised", "supervised", "semi"] = "unsupervised"  # attention model only
    temperature: float = 0.1  # attention model: softmax temperature over the cosine map
    embed_dim: int = 64  # attention model: the triplet embedding
    supervised_weight: float = 1.0
    silent_weight: float = 1.0
    trimap: bool = True  # LVS: the hard-negative trimap (false: one threshold, epsilon)
    hard_negative: bool = True  # LVS: the own negative region as an extra negative
    # LVS: 0 is the paper's InfoNCE; in (0, 1) the debiased estimator over the other clips (Chuang et al. 2020),
    # tau_plus the prior that another clip is a false negative (its sound one of this frame's silent objects)
    tau_plus: float = 0.0


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.image_size < 32 or d.image_size % 8:
        raise ConfigError(f"data.image_size: must be a multiple of 8, at least 32, got {d.image_size}")
    if not 0.5 <= d.audio_seconds <= 10:
        raise ConfigError(f"data.audio_seconds: must be within [0.5, 10], got {d.audio_seconds}")
    if m.floor is not None and not 0 <= m.floor < 1:
        raise ConfigError(f"model.floor: must be within [0, 1), got {m.floor}")
    if m.floor is None and d.eval_split == "val":
        raise ConfigError("model.floor: with data.eval_split val no other annotated split is left to choose it on; "
                          "give a number")
    for key in ("channels", "audio_channels"):
        widths = getattr(m, key)
        if not widths or min(widths) < 1:
            raise ConfigError(f"model.{key}: needs positive widths, got {widths}")
    if m.channels[-1] != m.audio_channels[-1]:
        raise ConfigError("model.audio_channels: must end with the same width as model.channels")
    if not 0 <= m.tau_plus < 1:
        raise ConfigError(f"model.tau_plus: must be within [0, 1), got {m.tau_plus}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


# ------------------------------------------------------------------------------------------------ samples
def benchmark_of(root: Path, benchmark: str) -> str:
    """``vggss`` or ``flickr``: as given, or from the files under ``root`` (``vggss.json`` or ``Annotations/``)."""
    if benchmark != "auto":
        return benchmark
    if (root / "vggss.json").is_file():
        return "vggss"
    if (root / "Annotations").is_dir():
        return "flickr"
    raise DataError("holds neither vggss.json nor an Annotations/ folder of Flickr-SoundNet XML files", root)


@dataclass
class Split:
    """The clips of one split: ids, ``truth`` (id -> 224 x 224 ground-truth map, for annotated clips),
    ``boxes`` (id -> normalised xyxy boxes, where known) and the silent ids."""

    ids: list[str]
    truth: dict[str, np.ndarray]
    boxes: dict[str, list[tuple[float, float, float, float]]]
    silent: set[str]


def _silent(root: Path, split: str) -> list[str]:
    path = root / "silent.json"
    if not path.is_file():
        return []
    from xmodal.data.benchmarks._files import read_json

    data = read_json(path)
    ids = data.get(split, []) if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError(f"expected {{split: [clip ids]}}, got {split!r}: {ids!r}", path)
    return ids


def read_split(root: Path, benchmark: str, split: str, annotated: bool) -> Split:
    """The clips of ``split``; ``annotated``: the split is scored, so it must have its ground truth."""
    silent = _silent(root, split)
    if benchmark == "vggss":
        records = vggss.read_vggss(root / VGGSS_FILES[split])
        by = vggss.vggss_by_file(records, root / VGGSS_FILES[split])
        truth = {k: vggss_gt_map(r.bboxes) for k, r in by.items()} if annotated else {}
        boxes = {k: [tuple(float(max(v, 0)) for v in b) for b in r.bboxes] for k, r in by.items()}
        return Split([*by, *silent], truth, boxes, set(silent))  # type: ignore[arg-type]
    from xmodal.data.benchmarks.vggss import read_test_list

    ids = read_test_list(root / f"{split}.txt")
    truth = {}
    if annotated:
        side = flickr_soundnet.FRAME_SIZE
        for i in ids:
            rec = flickr_soundnet.read_flickr_xml(root / "Annotations" / f"{i}.xml")
            truth[i] = flickr_gt_map([(b.xmin, b.ymin, b.xmax, b.ymax) for b in rec.boxes], frame=side)
    return Split([*ids, *silent], truth, {}, set(silent))


def _log_mel(signal: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=signal, sr=SAMPLE_RATE, n_fft=PARAMS["n_fft"], hop_length=PARAMS["hop"],
                                         n_mels=PARAMS["n_mels"])
    return np.log(mel + 1e-6).astype(np.float32)  # (mels, frames)


def audio_window(audio: Path, seconds: float) -> np.ndarray:
    """The ``seconds`` of 16-kHz mono audio centred on the annotated frame (zero-padded past the end)."""
    from xmodal.data.io import read_audio

    signal, _ = read_audio(audio, SAMPLE_RATE)
    length = round(seconds * SAMPLE_RATE)
    start = max(0, min(round(FRAME_TIME * SAMPLE_RATE) - length // 2, signal.size - length))
    window = np.zeros(length, np.float32)
    part = signal[start:start + length]
    window[:part.size] = part
    return window


def extract_sample(frame: Path, audio: Path, image_size: int, seconds: float) -> dict[str, torch.Tensor]:
    """``{"image": (3, S, S) uint8, "spectrogram": (1, 64, frames), "acoustic": (18,)}`` of one clip."""
    from xmodal.data.acoustic import segment_acoustic_features
    from xmodal.data.io import read_image

    image = read_image(frame, size=(image_size, image_size))
    window = audio_window(audio, seconds)
    acoustic = segment_acoustic_features(window, SAMPLE_RATE, PARAMS["acoustic_parts"])
    return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "spectrogram": torch.from_numpy(_log_mel(window))[None],
            "acoustic": torch.from_numpy(np.concatenate([acoustic.mean(0), acoustic.max(0)]))}


def _sprite_probs(encoder: nn.Module, image: np.ndarray) -> dict[str, torch.Tensor]:
    from xmodal.data.synth.sprite_encoder import SpriteEncoder, encode_frames

    assert isinstance(encoder, SpriteEncoder)
    return {"probs": encode_frames(encoder, image[None])["probs"]}  # (1, 7, 7, classes + 1)


def _sound_embedding(encoder: nn.Module, audio: Path, seconds: float) -> dict[str, torch.Tensor]:
    from xmodal.data.synth.sound_encoder import SoundEncoder, encode_segments

    assert isinstance(encoder, SoundEncoder)
    parts = max(1, round(seconds))  # the encoder was trained on 1-s patches
    return {"embedding": encode_segments(encoder, audio_window(audio, seconds), parts)["embedding"]}


def load_features(root: Path, ids: list[str], d: DataConfig, sprite_maps: bool,
                  sound_embedding: bool = False) -> list[dict[str, torch.Tensor]]:
    """Every clip's features (cached); with ``sprite_maps``, also the frame's sprite-encoder map
    ``"visual_map"``: its per-cell class probabilities ``(classes + background, 7, 7)``
    (:mod:`xmodal.data.synth.sprite_encoder`, trained once and cached); with ``sound_embedding``, also
    ``"sound_embedding"`` ``(seconds, 128)``: the sound encoder's embedding of each second of the window
    (:mod:`xmodal.data.synth.sound_encoder`, the stand-in for VGGish, trained once and cached). The encoders
    are pretrained weights, kept in the default cache whatever ``data.cache`` says."""
    from xmodal.data.synth import sound_encoder, sprite_encoder
    from xmodal.transforms.cache import TransformCache, file_digest, make_key

    cache = TransformCache(d.cache)
    params = {**PARAMS, "image_size": d.image_size, "seconds": d.audio_seconds}
    sprite = sprite_encoder.load_sprite_encoder() if sprite_maps and ids else None
    sound = sound_encoder.load_sound_encoder() if sound_embedding and ids else None
    out = []
    for i in ids:
        frame, audio = root / "frames" / f"{i}.jpg", root / "audio" / f"{i}.wav"
        for path in (frame, audio):
            if not path.is_file():
                raise DataError(f"clip {i!r}: file not found", path)
        key = make_key(file_digest(frame) + file_digest(audio), "sound_localization", params)
        sample = dict(cache.get_or_compute(key, partial(extract_sample, frame, audio, d.image_size,
                                                        d.audio_seconds)))
        if sprite is not None:
            image = sample["image"].permute(1, 2, 0).numpy()
            maps = cache.get_or_compute(make_key(file_digest(frame), "sound_localization_sprite_probs", params,
                                                 sprite_encoder.weights_key()), partial(_sprite_probs, sprite, image))
            sample["visual_map"] = maps["probs"][0].permute(2, 0, 1).contiguous()  # (classes + 1, 7, 7)
        if sound is not None:
            emb = cache.get_or_compute(make_key(file_digest(audio), "sound_localization_sound_embedding", params,
                                                sound_encoder.weights_key()),
                                       partial(_sound_embedding, sound, audio, d.audio_seconds))
            sample["sound_embedding"] = emb["embedding"]
        out.append(sample)
    return out


def box_mask(boxes: list[tuple[float, float, float, float]], size: int) -> torch.Tensor:
    """``(size, size)`` union of normalised xyxy boxes (the supervised target), scaled as LVS scales them."""
    return torch.from_numpy(vggss_gt_map(boxes, size)).float()


class LocalisationDataset(Dataset):
    """Samples ``{"id", "image" (3, S, S) float, "spectrogram" (1, 64, T), "acoustic" (18,), "sounding" (),
    "target" (S, S) box mask (zeros without boxes)}``, audio standardised with the training statistics."""

    def __init__(self, split: Split, features: list[dict[str, torch.Tensor]], stats: dict[str, torch.Tensor],
                 image_size: int) -> None:
        self.split, self.features, self.stats, self.ids = split, features, stats, split.ids
        self.targets = [box_mask(split.boxes.get(i, []), image_size) for i in split.ids]
        self.with_image = "visual_map" not in features[0] if features else True

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        f, s = self.features[index], self.stats
        visual = {"image": f["image"].float() / 255.0} if self.with_image else {"visual_map": f["visual_map"]}
        if "sound_embedding" in f:
            visual["sound_embedding"] = (f["sound_embedding"] - s["emb_mean"]) / s["emb_std"]
        return {"id": self.ids[index], **visual,
                "spectrogram": (f["spectrogram"] - s["spec_mean"]) / s["spec_std"],
                "acoustic": (f["acoustic"] - s["ac_mean"]) / s["ac_std"],
                "sounding": torch.tensor(self.ids[index] not in self.split.silent),
                "target": self.targets[index]}


def audio_stats(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    spec = torch.stack([f["spectrogram"] for f in features])
    ac = torch.stack([f["acoustic"] for f in features])
    stats = {"spec_mean": spec.mean(), "spec_std": spec.std().clamp_min(1e-4),
             "ac_mean": ac.mean(0), "ac_std": ac.std(0).clamp_min(1e-4)}
    if features and "sound_embedding" in features[0]:
        emb = torch.cat([f["sound_embedding"] for f in features])  # (clips x parts, 128)
        stats |= {"emb_mean": emb.mean(0), "emb_std": emb.std(0).clamp_min(1e-4)}
    return stats


def build_data(cfg: dict[str, Any]) -> tuple[LocalisationDataset, LocalisationDataset, LocalisationDataset | None,
                                             str]:
    """Training, evaluated and (when ``model.floor`` is null) floor-choosing datasets, and the benchmark."""
    d, m = _configs(cfg)
    sprite, sound = m.visual == "sprite", m.audio == "sound"
    root = Path(d.root)
    benchmark = benchmark_of(root, d.benchmark)
    if benchmark == "flickr" and d.eval_split != "test":
        raise ConfigError("data.eval_split: Flickr-SoundNet annotates the test split only; set it to test")
    if benchmark == "flickr" and m.floor is None:
        raise ConfigError("model.floor: Flickr-SoundNet annotates no validation split to choose it on; give a number")
    train = read_split(root, benchmark, "train", annotated=False)
    held = read_split(root, benchmark, d.eval_split, annotated=True)
    if not [i for i in train.ids if i not in train.silent]:
        raise DataError("the training split lists no sounding clip", root)
    train_features = load_features(root, train.ids, d, sprite, sound)
    stats = audio_stats(train_features)
    tune = None
    if m.floor is None:
        val = read_split(root, benchmark, "val", annotated=True)
        tune = LocalisationDataset(val, load_features(root, val.ids, d, sprite, sound), stats, d.image_size)
    return (LocalisationDataset(train, train_features, stats, d.image_size),
            LocalisationDataset(held, load_features(root, held.ids, d, sprite, sound), stats, d.image_size), tune, benchmark)


# ------------------------------------------------------------------------------------------------- models
class MapProjection(nn.Module):
    """A learned 1 x 1 projection (conv, GELU, conv) of a frozen feature map ``(N, C, h, w)`` to ``width``
    channels: the trainable top of a pretrained visual encoder."""

    def __init__(self, in_channels: int, hidden: int, width: int) -> None:
        super().__init__()
        self.net = (nn.Conv2d(in_channels, width, 1) if hidden == 0 else
                    nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, width, 1)))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(x), None


class SpectrumMLP(nn.Module):
    """An MLP on the per-band mean and standard deviation over time of a log-mel ``(N, 1, bands, frames)``,
    giving ``(N, width, 1, 1)`` (a one-position map, so the models' global max pooling passes it through)."""

    def __init__(self, bands: int, hidden: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * bands, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        stats = torch.cat([x.mean(-1), x.std(-1)], -1).flatten(1)  # (N, 2 * bands)
        return self.net(stats)[:, :, None, None], None


class EmbeddingMLP(nn.Module):
    """An MLP on the mean and maximum over seconds of frozen sound-encoder embeddings ``(N, parts, dim)``,
    giving ``(N, width, 1, 1)``: the trainable top of a pretrained audio encoder."""

    def __init__(self, dim: int, hidden: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(torch.cat([x.mean(1), x.amax(1)], -1))[:, :, None, None], None


class LocalisationModel(nn.Module):
    """The batch interface of both models: ``batch -> outputs`` with ``"heatmap" (N, h, w)`` and ``"score"``."""

    def __init__(self, m: ModelConfig) -> None:
        super().__init__()
        from xmodal.data.synth.sound_encoder import EMBEDDING
        from xmodal.data.synth.sprite_encoder import CLASS_NAMES
        from xmodal.tasks.models.lvs import FeatureEncoder

        acoustic_dim = ACOUSTIC_DIM if m.acoustic else 0
        width = m.channels[-1]
        audio: FeatureEncoder | None = None  # None: the model's own CNN
        if m.audio == "mlp":
            audio = SpectrumMLP(PARAMS["n_mels"], m.hidden, width)
        elif m.audio == "sound":
            audio = EmbeddingMLP(EMBEDDING, m.hidden, width)
        image: FeatureEncoder | None = MapProjection(len(CLASS_NAMES), m.visual_hidden, width) if m.visual == "sprite" else None
        if m.name == "lvs":
            from xmodal.tasks.models.lvs import LVSNet

            self.net: nn.Module = LVSNet(m.channels, m.audio_channels, trimap=m.trimap,
                                         hard_negative=m.hard_negative, acoustic_dim=acoustic_dim,
                                         image_encoder=image, audio_encoder=audio)
        else:
            from xmodal.tasks.models.attention_localiser import AttentionLocaliser

            self.net = AttentionLocaliser(m.channels, m.audio_channels, embed_dim=m.embed_dim,
                                          temperature=m.temperature, acoustic_dim=acoustic_dim,
                                          image_encoder=image, audio_encoder=audio)
        self.acoustic, self.visual = m.acoustic, "visual_map" if m.visual == "sprite" else "image"
        self.audio = "sound_embedding" if m.audio == "sound" else "spectrogram"

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.net(batch[self.visual], batch[self.audio], batch["acoustic"] if self.acoustic else None)


def objective(outputs: dict[str, torch.Tensor], batch: dict[str, Any], m: ModelConfig) -> torch.Tensor:
    if m.name == "lvs":
        from xmodal.tasks.models.lvs import lvs_loss

        return lvs_loss(outputs, batch["sounding"], m.silent_weight, tau_plus=m.tau_plus)
    from xmodal.tasks.models.attention_localiser import attention_loss

    return attention_loss(outputs, batch["target"], m.mode, m.supervised_weight, batch["sounding"],
                          m.silent_weight)


# ---------------------------------------------------------------------------------------- heatmaps, metric
FLOORS = tuple(round(0.1 * k, 1) for k in range(1, 10))


def floored(heatmap: np.ndarray, floor: float) -> np.ndarray:
    """The 224 x 224 map written for a model map of any size: resized as LVS resizes, then every value below
    ``floor`` of its range set to the minimum (``floor = 0``: the resized map unchanged)."""
    up = resize_linear(np.asarray(heatmap, np.float32))
    lo, hi = float(up.min()), float(up.max())
    if floor > 0 and hi > lo:
        up[up < lo + floor * (hi - lo)] = lo
    return up


def score_maps(maps: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, float]:
    """The LVS scores (percent) of 224 x 224 maps of the annotated clips."""
    return localization_scores([ciou(binarize_lvs(maps[k]), truth[k]) for k in truth])


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """100 x P(score of a sounding clip > a silent clip's), ties counted one half (the Mann-Whitney form of
    ``sklearn.metrics.roc_auc_score``)."""
    diff = positive[:, None] - negative[None, :]
    return float(100 * ((diff > 0).mean() + 0.5 * (diff == 0).mean()))


def model_maps(model: nn.Module, dataset: LocalisationDataset, floor: float,
               batch_size: int = 64) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``({id: written 224 x 224 map} of the annotated clips, {id: score} of every clip)``; ``floor = 0`` gives
    the resized maps unchanged."""
    from xmodal.train.loop import to_device

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    maps, scores = {}, {}
    # not pipeline.outputs_all: the LVS logits are (N, N + 2), so batches of different sizes do not concatenate
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            out = model(to_device(batch, device))
            for i, heat, score in zip(batch["id"], out["heatmap"].float().cpu(), out["score"].float().cpu()):
                scores[i] = float(score)
                if i in dataset.split.truth:
                    maps[i] = floored(heat.numpy(), floor)
    model.train(was_training)
    return maps, scores


def choose_floor(model: nn.Module, tune_set: LocalisationDataset) -> float:
    """The floor of :data:`FLOORS` with the best AUC on ``tune_set`` (the lowest among equals)."""
    raw, _ = model_maps(model, tune_set, 0.0)
    best = max(FLOORS, key=lambda f: (score_maps({k: floored(v, f) for k, v in raw.items()},
                                                 tune_set.split.truth)["auc"], -f))
    return float(best)


def evaluate(model: nn.Module, dataset: LocalisationDataset, *, floor: float | None,
             tune_set: LocalisationDataset | None = None) -> dict[str, float]:
    chosen = floor if floor is not None else choose_floor(model, _required(tune_set))
    maps, scores = model_maps(model, dataset, chosen)
    metrics = score_maps(maps, dataset.split.truth)
    metrics["floor"] = chosen
    silent = [scores[i] for i in dataset.ids if i in dataset.split.silent]
    if silent:
        sounding = [scores[i] for i in dataset.ids if i not in dataset.split.silent]
        metrics["silent_auc"] = roc_auc(np.array(sounding), np.array(silent))
    return metrics


# ------------------------------------------------------------------------------------------------ baselines
def _centre_map(size: tuple[float, float]) -> np.ndarray:
    w, h = size
    return vggss_gt_map([(0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2)])


def scene_boxes(root: Path) -> dict[str, list[tuple[float, float, float, float]]] | None:
    """Every object's normalised box at the annotated frame, per clip, from the builder's ``scenes.jsonl``."""
    path = root / "scenes.jsonl"
    if not path.is_file():
        return None
    out = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                scene = json.loads(line)
                cfg = scene["config"]
                frame = int(FRAME_TIME * cfg["fps"])
                out[scene["id"]] = [(b[0] / cfg["width"], b[1] / cfg["height"], b[2] / cfg["width"],
                                     b[3] / cfg["height"])
                                    for b in (v[frame] for v in scene["boxes"].values()) if b is not None]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise DataError(f"line {n}: not a scene record ({exc})", path) from exc
    return out


def baselines(dataset: LocalisationDataset, *, train_set: LocalisationDataset, root: Path,
              floor: float | None) -> dict[str, dict[str, float]]:
    """The audio-agnostic maps of the module docstring, scored as the model's maps are."""
    truth = dataset.split.truth
    floor = 0.5 if floor is None else floor  # noise has no model to choose it with
    sizes = [(b[2] - b[0], b[3] - b[1]) for boxes in train_set.split.boxes.values() for b in boxes]
    mean_size = tuple(np.mean(sizes, 0)) if sizes else (0.5, 0.5)
    rng = np.random.default_rng(0)
    table = {"centre": score_maps({k: _centre_map(mean_size) for k in truth}, truth),
             "random": score_maps({k: floored(rng.random((LVS_SIZE, LVS_SIZE)), floor) for k in truth}, truth)}
    table["random"]["floor"] = floor
    objects = scene_boxes(root)
    if objects is not None:
        missing = [k for k in truth if k not in objects]
        if missing:
            raise DataError(f"clip {missing[0]!r} is not in scenes.jsonl", root / "scenes.jsonl")
        largest = {k: max(objects[k], key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) for k in truth}
        table["largest_object"] = score_maps({k: vggss_gt_map([largest[k]]) for k in truth}, truth)
        table["objectness"] = score_maps({k: vggss_gt_map(objects[k]) for k in truth}, truth)
    return table


def _required(tune_set: LocalisationDataset | None) -> LocalisationDataset:
    if tune_set is None:
        raise ConfigError("model.floor: null needs an annotated validation split to choose it on")
    return tune_set


def write_heatmaps(model: nn.Module, dataset: LocalisationDataset, path: Path, *, floor: float | None,
                   tune_set: LocalisationDataset | None = None) -> Path:
    """``heatmaps.npz``: one 224 x 224 float32 map per annotated clip, keyed by its id (``xmodal eval
    sound-localization --predictions``), floored as :func:`evaluate` floors them."""
    maps, _ = model_maps(model, dataset, floor if floor is not None else choose_floor(model, _required(tune_set)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file object: np.savez would append .npz to a name without it
        np.savez(fh, allow_pickle=False, **maps)
    return path


def build(cfg: dict[str, Any]) -> TaskBundle:
    d, m = _configs(cfg)
    train_set, eval_set, tune_set, benchmark = build_data(cfg)
    if m.name == "attention" and m.mode != "unsupervised" and not train_set.split.boxes:
        raise ConfigError(f"model.mode {m.mode!r}: the training split has no boxes (VGG-SS layout only)")
    model = LocalisationModel(m)
    return TaskBundle(model=model, loss=partial(objective, m=m), train_set=train_set, collate=collate,
                      val_set=eval_set, evaluate=partial(evaluate, floor=m.floor, tune_set=tune_set), primary="auc",
                      baselines=partial(baselines, train_set=train_set, root=Path(d.root), floor=m.floor),
                      predict=partial(write_heatmaps, floor=m.floor, tune_set=tune_set), artifacts={"benchmark": benchmark},
                      split=d.eval_split)
