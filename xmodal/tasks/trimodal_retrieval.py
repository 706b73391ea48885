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

The task is a dataset view (features from the transform cache, and their augmentation) on the generic pipeline
(:mod:`xmodal.tasks.pipeline`): the model is built from a plan by :func:`xmodal.models.build_model`, the loss
comes from the losses registry, and evaluation, baselines and the prediction writer are the pipeline's.

Recipe sections: ``data:`` (see :class:`DataConfig`), ``model:`` (see :class:`ModelConfig`), ``train:``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError, DataError
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle
from xmodal.transforms import Transform, TransformCache, file_digest, make_key, transform_for
from xmodal.transforms.text import MiniLMEmbedding

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
    cache: str | None = None  # the transform cache's directory; null: $XMODAL_CACHE/features or ~/.cache/xmodal
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 441  # 20 ms at 22.05 kHz
    fmax: float = 8000.0
    max_seconds: float = 4.0  # longer recordings are cropped (random crop in training)
    shift: int = 4  # image augmentation: random translation of up to this many pixels
    text_batch: int = 256
    # Model selection without the held-out emoji: this percentage of the *training* emoji groups (skin-tone
    # variants stay with their base, chosen by a hash of val_seed and the group) becomes a split "val" that is
    # neither trained on nor tested; evaluation then runs on it instead of "test". 0: train on every group.
    val_percent: int = 0
    val_seed: int = 0


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
    # the audio tower's norm must not pool over time (padding would change the statistics): channel LayerNorm
    # at every frame ("layer") or none
    audio_norm: str = "layer"


def check(cfg: dict[str, Any]) -> None:
    """Check the ``data:`` and ``model:`` sections at parse time (before anything is built)."""
    _check_data(parse_section(DataConfig, cfg.get("data"), "data"))
    from xmodal.models import check_plan

    check_plan(model_plan(cfg))


def _check_data(d: DataConfig) -> DataConfig:
    if not 0 <= d.val_percent < 100:
        raise ConfigError(f"data.val_percent: expected an integer in [0, 100), got {d.val_percent}")
    return d


def val_split(group: str, val_percent: int, val_seed: int) -> bool:
    """Whether the training group ``group`` goes to the validation split (stable across machines: a hash)."""
    h = int(hashlib.sha1(f"{val_seed}:{group}".encode()).hexdigest(), 16)
    return h % 100 < val_percent


# ------------------------------------------------------------------------------------------------ features
@dataclass
class TrimodalItems:
    """The manifest's items and their features, every one decoded once through :mod:`xmodal.transforms` and
    kept in its content-keyed cache (the demo set is ~100 MB in memory).

    images: (N, 3, H, W) uint8; log-mels of item ``i``, voice ``v``: rows ``mel_offsets[i * voices + v]`` up to
    the next offset of ``mel_frames`` (total_frames, n_mels) float16, standardised per mel bin with the training
    items' mean and std; text: (N, 384) MiniLM embeddings.
    """

    ids: list[str]
    captions: list[str]
    splits: list[str]
    root: Path
    audio_paths: list[str]  # voice-0 recording of each item, relative to root (for reports)
    image_paths: list[str]
    sample_rate: int
    voices: int
    images: torch.Tensor
    mel_frames: torch.Tensor
    mel_offsets: list[int]
    text: torch.Tensor

    def mel(self, item: int, voice: int) -> torch.Tensor:
        """``(n_mels, frames)`` float16 log-mel of one recording."""
        k = item * self.voices + voice
        return self.mel_frames[self.mel_offsets[k]: self.mel_offsets[k + 1]].T


def _media_transforms(cfg: DataConfig, sample_rate: int) -> tuple[Transform, Transform]:
    """The registered image (uint8 RGB at the stored size) and log-mel transforms of the recipe's settings."""
    image = transform_for("image", size=None, mean=None, uint8=True)
    mel = transform_for("spectrogram", sample_rate=sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                        n_mels=cfg.n_mels, fmax=cfg.fmax, top_db=80.0)
    return image, mel


def _decode_chunk(files: list[tuple[Path, list[Path]]], cfg: DataConfig,
                  sample_rate: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Worker: images (n, 3, H, W) uint8 and every recording's float16 log-mel (n_mels, frames) of ``files``."""
    torch.set_num_threads(1)  # many tiny STFTs: threads only contend
    image, mel = _media_transforms(cfg, sample_rate)
    images = [cast(torch.Tensor, image(im)) for im, _ in files]  # both transforms return one tensor
    mels = [cast(torch.Tensor, mel(a)).to(torch.float16) for _, recordings in files for a in recordings]
    return torch.stack(images), mels


def _decode_media(files: list[tuple[Path, list[Path]]], cfg: DataConfig, sample_rate: int,
                  progress: bool) -> dict[str, torch.Tensor]:
    """Every item decoded in chunks over ``os.cpu_count()`` processes (at most 4): ``images``, and the log-mels
    as ``mel_frames`` (total_frames, n_mels) with ``mel_offsets`` (N * voices + 1) boundaries."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    chunk = 64
    parts = [files[i:i + chunk] for i in range(0, len(files), chunk)]
    workers = max(1, min(4, os.cpu_count() or 1, len(parts)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_decode_chunk, p, cfg, sample_rate) for p in parts]
        results = [f.result() for f in tqdm(futures, desc="decoding media", unit="chunk", disable=not progress)]
    mels = [m for r in results for m in r[1]]
    offsets = torch.tensor([0, *np.cumsum([m.shape[1] for m in mels])], dtype=torch.int64)
    return {"images": torch.cat([r[0] for r in results]), "mel_frames": torch.cat([m.T for m in mels]),
            "mel_offsets": offsets}


def _cached_features(files: list[tuple[Path, list[Path]]], captions: list[str], cfg: DataConfig,
                     sample_rate: int, cache: TransformCache, progress: bool) -> dict[str, torch.Tensor]:
    """Images, log-mels and MiniLM caption embeddings, from the transform cache or computed and stored there.

    Two entries: the media stack under the bytes of every file (names included) and the transforms' parameters,
    and the caption embeddings under the captions and the MiniLM weights."""
    from xmodal.data.synth.emoji_speech import file_lock

    for path in (p for image, recordings in files for p in (image, *recordings)):
        if not path.is_file():
            raise DataError(f"{path.name} is missing", source=path)
    image, mel = _media_transforms(cfg, sample_rate)
    content = hashlib.sha256("".join(f"{p.name}:{file_digest(p)};" for image_file, recordings in files
                                     for p in (image_file, *recordings)).encode()).hexdigest()
    media_key = make_key(content, "trimodal_media", {"image": image.params, "log_mel": mel.params,
                                                     "voices": len(files[0][1])})
    text = transform_for("caption", encoder="minilm")
    text_key = make_key(hashlib.sha256("\0".join(captions).encode()).hexdigest(), "minilm_embedding_stack", {},
                        text.weights_fingerprint())

    def embed() -> dict[str, torch.Tensor]:
        encoder = cast(MiniLMEmbedding, text).encoder()
        return {"text": torch.cat([encoder(captions[i:i + cfg.text_batch])
                                   for i in range(0, len(captions), cfg.text_batch)]).float()}

    cache.directory.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.directory / f".{media_key}.lock"):  # torchrun ranks: one decodes, the others read
        media = cache.get_or_compute(media_key, lambda: _decode_media(files, cfg, sample_rate, progress))
    return {**media, **cache.get_or_compute(text_key, embed)}


def _load_features(root: Path, cfg: DataConfig, progress: bool = True) -> TrimodalItems:
    """Images, log-mels of every recording and MiniLM caption embeddings of the dataset at ``root``."""
    from xmodal.data.manifest import read_manifest

    meta, rows = read_manifest(root)
    audio_fields = [f for f, m in meta["modalities"].items() if m in ("waveform", "audio")]
    for need in ("image", "caption"):
        if need not in meta["modalities"]:
            raise ConfigError(f"{root}/dataset.json: the tri-modal task needs a field {need!r}")
    if not audio_fields:
        raise ConfigError(f"{root}/dataset.json: the tri-modal task needs at least one waveform field")
    sample_rate = int(meta.get("sample_rate") or 22050)
    files = [(root / r["image"], [root / r[f] for f in audio_fields]) for r in rows]
    captions = [str(r["caption"]) for r in rows]
    feats = _cached_features(files, captions, cfg, sample_rate, TransformCache(cfg.cache), progress)
    splits = [str(r["split"]) for r in rows]
    if cfg.val_percent:
        splits = ["val" if s == "train" and val_split(str(r.get("group", r["id"])), cfg.val_percent, cfg.val_seed)
                  else s for s, r in zip(splits, rows, strict=True)]

    # Standardise log-mels with the training items' statistics (per mel bin). An item's voices are adjacent rows.
    voices = len(audio_fields)
    offsets = feats["mel_offsets"]
    per_item = offsets[voices::voices] - offsets[:-1:voices]
    is_train = torch.tensor([s == "train" for s in splits])
    frames = feats["mel_frames"][is_train.repeat_interleave(per_item)].float()
    mean, std = frames.mean(0), frames.std(0).clamp_min(1e-3)
    mel_frames = ((feats["mel_frames"].float() - mean) / std).to(torch.float16)
    return TrimodalItems([str(r["id"]) for r in rows], captions, splits, root,
                         [str(r[audio_fields[0]]) for r in rows], [str(r["image"]) for r in rows], sample_rate,
                         voices, feats["images"], mel_frames, offsets.tolist(), feats["text"])


class TrimodalDataset(Dataset):
    """Samples ``{"id", "image": (3, H, W) float, "audio": (n_mels, frames) float, "text": (384,) float}``.

    In training a random voice, a random crop of long recordings and a random image translation are drawn
    from torch's global RNG, which the trainer seeds per sample from (seed, epoch, index) so that any number of
    loader workers and any resume point give the same draws (:mod:`xmodal.train.sampling`); in evaluation
    voice 0, no crop, no shift.
    """

    def __init__(self, items: TrimodalItems, split: str, cfg: DataConfig, train: bool) -> None:
        self.items, self.cfg, self.train = items, cfg, train
        self.indices = [i for i, s in enumerate(items.splits) if s == split]
        self.max_frames = int(cfg.max_seconds * items.sample_rate / cfg.hop_length)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = self.indices[index]
        items = self.items
        image = items.images[i].float() / 255.0  # (3, H, W)
        if self.train:
            mel = items.mel(i, int(torch.randint(items.voices, ())))
            if self.cfg.shift:
                k = self.cfg.shift
                dx, dy = (int(v) for v in torch.randint(-k, k + 1, (2,)))
                # Pad with white (the background) and crop back: a translation by (dx, dy).
                image = nn.functional.pad(image, (k, k, k, k), value=1.0)[:, k + dy: k + dy + image.shape[1],
                                                                            k + dx: k + dx + image.shape[2]]
        else:
            mel = items.mel(i, 0)
        frames = mel.shape[1]
        if frames > self.max_frames:
            start = int(torch.randint(frames - self.max_frames + 1, ())) if self.train else 0
            mel = mel[:, start: start + self.max_frames]
        return {"id": items.ids[i], "image": image, "audio": mel.float(), "text": items.text[i]}


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
        if key == "audio_norm" and value not in ("layer", "none"):
            raise ConfigError(f"model.audio_norm: expected layer or none (mask-exact), got {value!r}")
        if key in ("image_norm", "image_channels_last", "audio_norm"):
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
                      "norm": m.audio_norm, "stem_stride": m.audio_stem_stride},
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
def prepare_data(cfg: dict[str, Any], progress: bool = True) -> tuple[TrimodalItems, DataConfig]:
    """Build (or reuse) the dataset named by ``data.builder`` and load its features."""
    from xmodal.data.registry import get_builder

    d = _check_data(parse_section(DataConfig, cfg.get("data"), "data"))
    root = Path(d.root) if d.root else default_data_root()
    path = get_builder(d.builder).build(root, **dict(d.options))
    return _load_features(Path(path), d, progress), d


def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg``: data (built and cached on first use), model, loss, evaluation."""
    items, d = prepare_data(cfg)
    split = "val" if d.val_percent else "test"
    train_set = TrimodalDataset(items, "train", d, train=True)
    test_set = TrimodalDataset(items, split, d, train=False)
    if len(test_set) == 0:
        raise ConfigError(f"data: the dataset has no {split!r} items to evaluate on (raise data.options.max_groups"
                          + (" or data.val_percent)" if d.val_percent else ")"))
    return pipeline.assemble(kind="contrastive", model=build_model(cfg), modalities=FIELD_MODALITIES,
                             train_set=train_set, val_set=test_set, collate=collate, split=split,
                             batch_size=pipeline.eval_batch_size(cfg))
