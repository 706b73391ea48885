"""Tri-modal contrastive alignment of image, audio and text (CLIP/VATT/ImageBind style), with retrieval evaluation.

Data: a manifest dataset with fields ``image``, ``caption`` and one or more spoken recordings ``audio``,
``audio_1``, ... (by default ``emoji_speech``, built offline and cached). Model, following the nature of each
modality (DESIGN.md): a 2-D CNN on the image; a 1-D CNN over time on the log-mel spectrogram (mel bins as
channels, exact padding masks); for text the pretrained MiniLM sentence encoder, frozen, whose 384-d outputs are
computed once and cached, followed by a trainable MLP. Each tower is projected to one unit-norm space and the loss
is the mean symmetric InfoNCE over the three pairs image-audio, image-text, audio-text with one learnable
temperature (VATT's pairwise NCE; ImageBind aligns pairs the same way).

Evaluation: on the held-out split (emoji never seen in training), every ordered pair of modalities
(query -> gallery) is scored with R@1/5/10, MedR and MeanR (:mod:`xmodal.metrics.retrieval`); the test audio
query is voice 0.

The task is a dataset view (the decoded feature store and its augmentation) on the generic pipeline
(:mod:`xmodal.tasks.pipeline`): the model is built from a plan by :func:`xmodal.models.build_model`, the loss
comes from the losses registry, and evaluation, baselines and the prediction writer are the pipeline's.

Recipe sections: ``data:`` (see :class:`DataConfig`), ``model:`` (see :class:`ModelConfig`), ``train:``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.tasks import fields as xfields
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle

MODALITIES = ("image", "audio", "text")
FIELD_MODALITIES = {"image": "image", "audio": "spectrogram", "text": "caption"}  # text: MiniLM embeddings


def default_data_root() -> Path:
    """Where built datasets are cached: ``$XMODAL_DATA``, else ``$XDG_CACHE_HOME/xmodal/datasets``."""
    if os.environ.get("XMODAL_DATA"):
        return Path(os.environ["XMODAL_DATA"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xmodal" / "datasets"


@dataclass
class DataConfig:
    builder: str = "emoji_speech"  # a registered builder (`xmodal data list`)
    root: str | None = None  # cache directory of built datasets; null: default_data_root()
    options: dict[str, Any] = field(default_factory=dict)  # passed to the builder (e.g. max_groups)
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 441  # 20 ms at 22.05 kHz
    fmax: float = 8000.0
    max_seconds: float = 4.0  # longer recordings are cropped (random crop in training)
    shift: int = 4  # image augmentation: random translation of up to this many pixels
    text_batch: int = 256


@dataclass
class ModelConfig:
    embed_dim: int = 256
    image_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    image_depth: int = 1
    image_stem_stride: int = 2  # 64 px emoji -> 32 px after the first conv: 5x less compute, same accuracy class
    audio_channels: list[int] = field(default_factory=lambda: [128, 256, 256])
    audio_depth: int = 1
    audio_kernel: int = 5
    audio_stem_stride: int = 2  # 20 ms frames -> 40 ms after the first conv
    text_hidden: int = 512
    dropout: float = 0.1
    init_temperature: float = 0.07
    # GroupNorm normalises each image alone, so GradCache accumulation and data parallelism stay exact;
    # "batch" (BatchNorm) couples the samples of a micro-batch and is exact with neither
    image_norm: str = "group"
    image_channels_last: bool = True  # same values; GroupNorm convolutions run faster that way on CPU


def check(cfg: dict[str, Any]) -> None:
    """Check the ``data:`` and ``model:`` sections at parse time (before anything is built)."""
    parse_section(DataConfig, cfg.get("data"), "data")
    from xmodal.models import check_plan

    check_plan(model_plan(cfg))


# ------------------------------------------------------------------------------------------------ features
@dataclass
class FeatureStore:
    """Every item of the dataset decoded once and kept in memory (the demo set is ~100 MB this way).

    images: (N, 3, H, W) uint8; mels: N lists (one per voice) of (n_mels, frames) float16 log-mels,
    standardised with the training set's mean and std; text: (N, 384) MiniLM embeddings.
    """

    ids: list[str]
    captions: list[str]
    splits: list[str]
    images: torch.Tensor
    mels: list[list[torch.Tensor]]
    text: torch.Tensor
    root: Path
    audio_paths: list[str]  # voice-0 recording of each item, relative to root (for reports)
    image_paths: list[str]
    sample_rate: int


def _decode_chunk(root: Path, rows: list[dict[str, Any]], audio_fields: list[str], cfg: DataConfig,
                  sample_rate: int | None) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Worker: images (n, 3, H, W) uint8 and per-voice float16 log-mels of ``rows``."""
    from xmodal.data import io

    torch.set_num_threads(1)  # many tiny STFTs: threads only contend
    images, mels = [], []
    for r in rows:
        images.append(xfields.image_uint8(root / r["image"]))
        wavs = []
        for f in audio_fields:
            wav, rate = io.read_audio(root / r[f], sample_rate)
            wavs.append(torch.from_numpy(wav))
            sample_rate = rate  # the others must match: one batched STFT below
        mel = xfields.mel_module(int(sample_rate), cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmax)
        mels.append(xfields.log_mels(wavs, mel, cfg.hop_length))
    return torch.stack(images), mels


def _decode_parallel(root: Path, rows: list[dict[str, Any]], audio_fields: list[str], cfg: DataConfig,
                     sample_rate: int | None, progress: bool) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
    """Decode every item in chunks over ``os.cpu_count()`` processes (at most 4)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    chunk = 64
    parts = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
    workers = max(1, min(4, os.cpu_count() or 1, len(parts)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_decode_chunk, root, p, audio_fields, cfg, sample_rate) for p in parts]
        results = [f.result() for f in tqdm(futures, desc="decoding media", unit="chunk", disable=not progress)]
    return torch.cat([r[0] for r in results]), [m for r in results for m in r[1]]


def _features(cache: Path, root: Path, rows: list[dict[str, Any]], audio_fields: list[str], meta: dict[str, Any],
              cfg: DataConfig, progress: bool) -> tuple[torch.Tensor, list[list[torch.Tensor]], torch.Tensor]:
    """Read the feature cache, or decode everything and write it."""
    from safetensors.torch import load_file, save_file

    if cache.is_file():
        t = load_file(str(cache))
        n_voices = len(audio_fields)
        offsets = t["mel_offsets"].tolist()  # flat (N * V + 1) boundaries into the concatenated frames
        flat = t["mel_frames"]  # (total_frames, n_mels)
        mels = [[flat[offsets[i * n_voices + v]: offsets[i * n_voices + v + 1]].T for v in range(n_voices)]
                for i in range(len(rows))]
        images, text = t["images"], t["text"]
    else:
        images, mels = _decode_parallel(root, rows, audio_fields, cfg, meta.get("sample_rate"), progress)
        text = xfields.sentence_embeddings([str(r["caption"]) for r in rows], batch_size=cfg.text_batch)
        lengths = [m.shape[1] for per in mels for m in per]
        offsets_t = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int64)
        flat = torch.cat([m.T for per in mels for m in per])  # (total_frames, n_mels)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        save_file({"images": images.contiguous(), "mel_frames": flat.contiguous(), "mel_offsets": offsets_t,
                   "text": text.contiguous()}, str(tmp))
        os.replace(tmp, cache)
    return images, mels, text


def _load_features(root: Path, cfg: DataConfig, progress: bool = True) -> FeatureStore:
    """Decode images, log-mels of every recording and MiniLM caption embeddings; cached in ``root/cache``."""
    from xmodal.data.manifest import read_manifest

    meta, rows = read_manifest(root)
    audio_fields = [f for f, m in meta["modalities"].items() if m in ("waveform", "audio")]
    for need in ("image", "caption"):
        if need not in meta["modalities"]:
            raise ConfigError(f"{root}/dataset.json: the tri-modal task needs a field {need!r}")
    if not audio_fields:
        raise ConfigError(f"{root}/dataset.json: the tri-modal task needs at least one waveform field")
    sig = {k: v for k, v in asdict(cfg).items() if k in ("n_mels", "n_fft", "hop_length", "fmax")}
    key = hashlib.sha1(json.dumps([sig, len(rows), audio_fields], sort_keys=True).encode()).hexdigest()[:10]
    cache = root / "cache" / f"features-{key}.safetensors"
    ids = [str(r["id"]) for r in rows]
    from xmodal.data.synth.emoji_speech import file_lock

    cache.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.with_name(cache.name + ".lock")):  # torchrun ranks: one computes, the others read
        images, mels, text = _features(cache, root, rows, audio_fields, meta, cfg, progress)

    # Standardise log-mels with the training items' statistics (per mel bin).
    train_idx = [i for i, r in enumerate(rows) if r["split"] == "train"]
    frames = torch.cat([mels[i][v].float() for i in train_idx for v in range(len(mels[i]))], dim=1)
    mean, std = frames.mean(1, keepdim=True), frames.std(1, keepdim=True).clamp_min(1e-3)
    mels = [[((m.float() - mean) / std).to(torch.float16) for m in per] for per in mels]
    return FeatureStore(ids, [str(r["caption"]) for r in rows], [str(r["split"]) for r in rows], images, mels,
                        text, root, [str(r[audio_fields[0]]) for r in rows], [str(r["image"]) for r in rows],
                        int(meta.get("sample_rate") or 22050))


class TrimodalDataset(Dataset):
    """Samples ``{"id", "image": (3, H, W) float, "audio": (n_mels, frames) float, "text": (384,) float}``.

    In training a random voice, a random crop of long recordings and a random image translation are drawn
    from torch's global RNG, which the trainer seeds per sample from (seed, epoch, index) so that any number of
    loader workers and any resume point give the same draws (:mod:`xmodal.train.sampling`); in evaluation
    voice 0, no crop, no shift.
    """

    def __init__(self, store: FeatureStore, split: str, cfg: DataConfig, train: bool) -> None:
        self.store, self.cfg, self.train = store, cfg, train
        self.indices = [i for i, s in enumerate(store.splits) if s == split]
        self.max_frames = int(cfg.max_seconds * store.sample_rate / cfg.hop_length)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = self.indices[index]
        s = self.store
        image = s.images[i].float() / 255.0  # (3, H, W)
        voices = s.mels[i]
        if self.train:
            mel = voices[int(torch.randint(len(voices), ()))]
            if self.cfg.shift:
                k = self.cfg.shift
                dx, dy = (int(v) for v in torch.randint(-k, k + 1, (2,)))
                # Pad with white (the background) and crop back: a translation by (dx, dy).
                image = nn.functional.pad(image, (k, k, k, k), value=1.0)[:, k + dy: k + dy + image.shape[1],
                                                                            k + dx: k + dx + image.shape[2]]
        else:
            mel = voices[0]
        frames = mel.shape[1]
        if frames > self.max_frames:
            start = int(torch.randint(frames - self.max_frames + 1, ())) if self.train else 0
            mel = mel[:, start: start + self.max_frames]
        return {"id": s.ids[i], "image": image, "audio": mel.float(), "text": s.text[i]}


collate = pipeline.make_collate(FIELD_MODALITIES)  # log-mels padded along time with ``audio_mask``


# --------------------------------------------------------------------------------------------------- model
def model_plan(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``model:`` plan of the recipe's settings: a 2-D CNN on the image, a 1-D CNN over time on the log-mel
    (mel bins as channels; channel LayerNorm keeps the padding mask exact), a trainable projection of the frozen
    MiniLM embeddings, all projected to one ``embed_dim`` space."""
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    d = parse_section(DataConfig, cfg.get("data"), "data")
    for key, value in asdict(m).items():
        values = value if isinstance(value, list) else [value]
        if key == "image_norm" and value not in ("group", "layer", "batch", "none"):
            raise ConfigError(f"model.image_norm: expected group, layer, batch or none, got {value!r}")
        if key in ("image_norm", "image_channels_last"):
            continue
        if key not in ("dropout", "init_temperature") and (not values or min(values) < 1):
            raise ConfigError(f"model.{key}: must be >= 1, got {value}")
    return {
        "encoders": {
            "image": {"family": "cnn2d", "channels": m.image_channels, "depth": m.image_depth,
                      "norm": m.image_norm, "stem_stride": m.image_stem_stride,
                      "channels_last": m.image_channels_last},
            "audio": {"modality": "spectrogram", "family": "cnn1d", "in_channels": d.n_mels,
                      "channels": m.audio_channels, "depth": m.audio_depth, "kernel_size": m.audio_kernel,
                      "norm": "layer", "stem_stride": m.audio_stem_stride},
            "text": {"modality": "caption", "family": "minilm", "width": m.text_hidden, "dropout": m.dropout},
        },
        "embed_dim": m.embed_dim,
        "init_temperature": m.init_temperature,
    }


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """The tri-modal ContrastiveModel of the recipe ``cfg`` (its ``model:`` and ``data:`` sections)."""
    from xmodal.models import build_model as build_from_plan

    return build_from_plan(model_plan(cfg))


def loss_fn(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """Mean symmetric InfoNCE over image-audio, image-text and audio-text (the registry's ``info_nce``)."""
    from xmodal.models import build_loss

    return build_loss("info_nce")(outputs, batch)


# ---------------------------------------------------------------------------------------------- evaluation
def embed_all(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Unit-norm embeddings ``{modality: (N, embed_dim)}`` of every item of ``dataset``, in order."""
    return pipeline.embed_all(model, dataset, collate, MODALITIES, batch_size)


def retrieval_table(embeddings: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """``{"image->audio": {R@1, R@5, R@10, MedR, MeanR}, ...}`` for every ordered pair of modalities."""
    return pipeline.retrieval_table({m: embeddings[m] for m in MODALITIES})


def evaluate(model: nn.Module, dataset: Dataset) -> dict[str, float]:
    """Flat metrics ``{"image->audio/R@1": ..., ..., "mean/R@1": ...}`` on ``dataset`` (the held-out split)."""
    return pipeline.retrieval_evaluate(model, dataset, collate=collate, modalities=MODALITIES)


# ----------------------------------------------------------------------------------------------- the task
def prepare_data(cfg: dict[str, Any], progress: bool = True) -> tuple[FeatureStore, DataConfig]:
    """Build (or reuse) the dataset named by ``data.builder`` and load its features."""
    from xmodal.data.registry import get_builder

    d = parse_section(DataConfig, cfg.get("data"), "data")
    root = Path(d.root) if d.root else default_data_root()
    path = get_builder(d.builder).build(root, **dict(d.options))
    return _load_features(Path(path), d, progress), d


def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg``: data (built and cached on first use), model, loss, evaluation."""
    store, d = prepare_data(cfg)
    train_set = TrimodalDataset(store, "train", d, train=True)
    test_set = TrimodalDataset(store, "test", d, train=False)
    if len(test_set) == 0:
        raise ConfigError("data: the dataset has no 'test' items to evaluate on (raise data.options.max_groups)")
    return pipeline.assemble(kind="contrastive", model=build_model(cfg), modalities=FIELD_MODALITIES,
                             train_set=train_set, val_set=test_set, collate=collate, split="test",
                             batch_size=pipeline.eval_batch_size(cfg))
