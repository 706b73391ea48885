"""Cross-modal retrieval on the benchmarks' official files: image-text (COCO / Flickr30k Karpathy JSON), video-text
(MSR-VTT, 1k-A test) and audio-text (AudioCaps, Clotho), scored exactly as ``xmodal eval retrieval`` scores them.

Data: :mod:`xmodal.tasks.retrieval_data` (items and captions in the protocol's order; media decoded once into the
transform cache). ``data.build`` (builder options) makes the protocol's scene builder write the files into
``data.root`` (null: a folder of the data root named by the options) when they are missing.

Model, two towers as CLIP and VATT (images and sounds have continuous, redundant signals: convolutions; captions
are discrete: the pretrained MiniLM sentence tower, frozen, with a trainable projection):

- image: the 2-D CNN of ``build_encoder("image")``; audio: the 1-D CNN over time of
  ``build_encoder("spectrogram", family="cnn1d")`` on log-mels. The last feature map is pooled on a coarse grid
  (``model.grid`` columns of the image, or time bins of the sound) and flattened, so where things are and what
  sounds first survive pooling: the galleries' hard negatives differ in exactly that.
- video: the mixture of embedding experts (:class:`xmodal.nn.vl.MEE`) over three experts, as the survey describes
  for MSR-VTT: appearance (the image CNN on each sampled frame, averaged over time), motion (the 3-D CNN of
  ``build_encoder("video")`` on the frames) and audio (the 1-D CNN on the soundtrack's log-mels).

``model.item: sprite_encoder`` (:mod:`xmodal.tasks.retrieval_items`) replaces the image CNN (and the video's
appearance expert) by a frozen trunk, the sprite encoder trained here on the scene vocabulary, with per-cell
colour statistics and a trainable head that keeps the grid: the model and the bag-of-words baseline then share a
far better item space, and the text towers decide.

Text (``model.text``, :mod:`xmodal.tasks.retrieval_text`): ``minilm`` (the frozen sentence embedding and a
trainable MLP), ``transformer`` (the frozen MiniLM token states and a trainable Transformer with attention
pooling: order-aware) or ``bag_of_words`` (TF-IDF and a linear map). ``data.twin_batches`` puts every training
item's hard-negative twin in its batch. ``data.captions_per_item`` k > 1 gives each training item k distinct
captions, all positives (:func:`multi_positive_nce`).

Loss: CLIP's symmetric InfoNCE with a learnable temperature (gathered over ranks for two towers; over the local
batch for MEE, whose similarity depends on the caption's expert weights).

Evaluation: the (captions, items) similarity matrix of the held-out split scored by
:func:`xmodal.metrics.retrieval_protocols.evaluate_protocol` (any-of-five for item-to-text, pessimistic ties):
R@1/5/10, MedR and MeanR in both directions, and ``mean_R@1`` (the two directions' mean, the primary metric).
Baselines: ``random`` (Gaussian embeddings); ``bag_of_words``, the trivial text tower trained end to end: a
TF-IDF tower with its own linear map and its own item tower of the model's architecture, trained from scratch
by :func:`fit` on the same data, steps, schedule and loss (what word identity alone gives away, with the word
order, relations and temporal order it cannot see); and ``bag_of_words_on_model_items``, a probe, not a trivial
baseline: TF-IDF fitted by ridge least squares onto the trained model's own item embeddings (it gets the whole
trained item tower for free). Predictions: ``sim.npy``, the matrix in the protocol's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle
from xmodal.tasks.retrieval_data import PROTOCOL_FILES, MediaSettings, RetrievalSet, TwinBatches, collate
from xmodal.tasks.retrieval_items import ITEM_TOWERS, build_item_tower, sprite_grid_features
from xmodal.tasks.retrieval_text import MINILM_DIM, TEXT_TOWERS, build_text_tower, text_inputs, tfidf

if TYPE_CHECKING:
    from xmodal.nn.encoders.cnn import ConvEncoder
    from xmodal.train.config import TrainConfig

PRIMARY = "mean_R@1"


@dataclass
class DataConfig:
    protocol: str = "coco-5k"  # coco-5k, coco-1k, flickr, msrvtt-1ka, audiocaps or clotho
    root: str | None = None  # the folder of the official files; null: the data root's build of data.build
    build: dict[str, Any] | None = None  # options of the protocol's scene builder; used when files are missing
    train_file: str | None = None  # null: the protocol's (e.g. dataset_coco.json, MSRVTT_data.json, train.csv)
    eval_file: str | None = None  # null: the protocol's test file (e.g. MSRVTT_JSFUSION_test.csv, test.csv)
    media: str | None = None  # folder of the training media under root; null: the protocol's
    eval_media: str | None = None
    audio_name: str = "{youtube_id}.wav"  # AudioCaps: a clip's file name
    image_size: int = 64
    frames: int = 8  # video frames sampled uniformly
    frame_size: int = 48
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 320  # 20 ms at 16 kHz
    max_seconds: float = 10.0  # sounds are cut or zero-padded to this length
    shift: int = 0  # training augmentation: images and frames moved by up to this many pixels
    twin_batches: bool = False  # training batches of twin pairs (item 2k and its hard negative 2k + 1)
    captions_per_item: int = 1  # k > 1: k distinct captions per training item, all positives (multi-positive loss)
    max_tokens: int = 32  # word pieces kept per caption for model.text: transformer
    cache: str | None = None  # transform cache directory; null: $XMODAL_CACHE/features


@dataclass
class ModelConfig:
    embed_dim: int = 128
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])  # the image (and frame) CNN
    stem_stride: int = 2
    grid: int = 2  # columns of the image / time bins of the sound kept apart by the pooling
    audio_channels: list[int] = field(default_factory=lambda: [64, 128])
    motion_channels: list[int] = field(default_factory=lambda: [16, 32])
    item: str = "cnn"  # the image / frame tower: cnn (trained from scratch) | sprite_encoder (frozen trunk + head)
    item_input: int = 112  # model.item: sprite_encoder: the side images are resized to (map side: ceil(/ 16))
    item_hidden: int = 64  # model.item: sprite_encoder: the per-cell MLP's width
    text: str = "minilm"  # the caption tower: minilm | transformer | bag_of_words (retrieval_text.py)
    text_hidden: int = 256
    text_layers: int = 1  # model.text: transformer
    text_heads: int = 4
    dropout: float = 0.1
    init_temperature: float = 0.07


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.protocol not in PROTOCOL_FILES:
        raise ConfigError(f"data.protocol: unknown {d.protocol!r}; choose one of {', '.join(PROTOCOL_FILES)}")
    if min(m.embed_dim, m.grid, m.text_hidden, m.stem_stride) < 1 or not m.channels or not m.audio_channels:
        raise ConfigError("model: embed_dim, grid, text_hidden and stem_stride must be >= 1, channels non-empty")
    if m.item not in ITEM_TOWERS:
        raise ConfigError(f"model.item: unknown {m.item!r}; choose one of {', '.join(ITEM_TOWERS)}")
    if m.item == "sprite_encoder" and (m.item_input < 16 or m.item_hidden < 1):
        raise ConfigError(f"model.item_input must be >= 16 and model.item_hidden >= 1, got {m.item_input} and "
                          f"{m.item_hidden}")
    if m.item == "sprite_encoder" and PROTOCOL_FILES[d.protocol].modality == "audio":
        raise ConfigError(f"model.item: sprite_encoder encodes images and frames; {d.protocol} items are sounds")
    if m.text not in TEXT_TOWERS:
        raise ConfigError(f"model.text: unknown {m.text!r}; choose one of {', '.join(TEXT_TOWERS)}")
    if min(m.text_layers, m.text_heads, d.max_tokens, d.captions_per_item) < 1:
        raise ConfigError("model.text_layers, model.text_heads, data.max_tokens and data.captions_per_item must "
                          "be >= 1")
    if m.text in ("transformer", "hybrid") and m.text_hidden % m.text_heads:
        raise ConfigError(f"model.text_heads: {m.text_heads} must divide model.text_hidden ({m.text_hidden})")


def _conv(adapter: nn.Module) -> ConvEncoder:
    """The :class:`ConvEncoder` inside ``build_encoder``'s CNN adapter (its feature maps, before pooling)."""
    from xmodal.nn.encoders.cnn import ConvEncoder

    encoder = adapter.encoder
    if not isinstance(encoder, ConvEncoder):
        raise TypeError(f"expected a ConvEncoder inside {type(adapter).__name__}, got {type(encoder).__name__}")
    return encoder


# --------------------------------------------------------------------------------------------------- model
class GridImageTower(nn.Module):
    """``(b, 3, H, W)`` -> ``(b, out_dim)``: the image CNN's last map averaged over rows and over ``grid`` column
    bands, flattened (left and right stay apart)."""

    def __init__(self, channels: list[int], stem_stride: int, grid: int, out_dim: int) -> None:
        super().__init__()
        from xmodal.models import build_encoder

        self.cnn = build_encoder("image", family="cnn2d", channels=channels, stem_stride=stem_stride)
        self.grid = grid
        self.proj = nn.Linear(channels[-1] * grid, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, _ = _conv(self.cnn).forward_features(x)  # (b, C, h, w)
        return self.proj(F.adaptive_avg_pool2d(feats, (1, self.grid)).flatten(1))


class GridAudioTower(nn.Module):
    """``(b, n_mels, frames)`` -> ``(b, out_dim)``: the 1-D CNN over time, averaged over ``grid`` time bins,
    flattened (what sounds first stays apart from what follows)."""

    def __init__(self, n_mels: int, channels: list[int], grid: int, out_dim: int) -> None:
        super().__init__()
        from xmodal.models import build_encoder

        self.cnn = build_encoder("spectrogram", family="cnn1d", channels=channels, in_channels=n_mels,
                                 stem_stride=2)
        self.grid = grid
        self.proj = nn.Linear(channels[-1] * grid, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, _ = _conv(self.cnn).forward_features(x)  # (b, C, t)
        return self.proj(F.adaptive_avg_pool1d(feats, self.grid).flatten(1))


class MotionTower(nn.Module):
    """``(b, T, 3, H, W)`` frames -> ``(b, out_dim)``: the 3-D CNN of the video modality."""

    def __init__(self, channels: list[int], out_dim: int) -> None:
        super().__init__()
        from xmodal.models import build_encoder

        self.cnn = build_encoder("video", family="cnn3d", channels=channels, stem_stride=2, out_dim=out_dim)
        self.out_dim = out_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.cnn(frames)


class RetrievalModel(nn.Module):
    """Item tower(s) and the caption tower. ``forward(batch)`` gives ``{"item_emb", "text_emb", "logit_scale"}``
    (two towers, unit norm) or ``{"sim": (b, b), "logit_scale"}`` (MEE); :meth:`similarity` scores every caption
    against every item."""

    def __init__(self, modality: str, m: ModelConfig, n_mels: int, text_dim: int = MINILM_DIM,
                 max_tokens: int = 32, vocabulary: int = 0) -> None:
        super().__init__()
        from xmodal.nn.objectives import LogitScale

        self.modality = modality
        # text_dim: 384 (MiniLM) or the TF-IDF vocabulary's size (bag_of_words)
        self.text = build_text_tower(m.text, in_dim=text_dim, hidden=m.text_hidden, dropout=m.dropout,
                                     layers=m.text_layers, heads=m.text_heads, max_tokens=max_tokens,
                                     vocabulary=vocabulary)  # vocabulary: model.text: hybrid's TF-IDF width
        self.logit_scale = LogitScale(m.init_temperature)
        d = m.embed_dim
        # model.item: sprite_encoder reads the frozen features the data carries, not the pixels
        self.frozen_items = m.item == "sprite_encoder"
        look: nn.Module = (build_item_tower(m.item_input, m.item_hidden, d, m.dropout) if self.frozen_items
                           else GridImageTower(m.channels, m.stem_stride, m.grid, d))
        if modality == "video":
            from xmodal.nn.vl import MEE

            self.experts = nn.ModuleDict({
                "appearance": look,
                "motion": MotionTower(m.motion_channels, d),
                "audio": GridAudioTower(n_mels, m.audio_channels, m.grid, d)})
            self.mee = MEE({name: d for name in self.experts}, m.text_hidden, d)
        else:
            self.item = (look if modality == "image" else GridAudioTower(n_mels, m.audio_channels, m.grid, d))
            self.text_out = nn.Linear(m.text_hidden, d)

    def encode_items(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"item": (b, d)}`` unit norm, or the video experts ``{"appearance", "motion", "audio"}``."""
        if self.modality == "video":
            frames = batch["frames"]  # (b, T, 3, H, W)
            b, t = frames.shape[:2]
            per_frame = batch["frame_features"] if self.frozen_items else frames  # (b, T, C, g, g) | pixels
            look = self.experts["appearance"](per_frame.flatten(0, 1)).view(b, t, -1).mean(1)
            return {"appearance": look, "motion": self.experts["motion"](frames),
                    "audio": self.experts["audio"](batch["audio"])}
        key = "image_features" if self.frozen_items and self.modality == "image" else self.modality
        return {"item": F.normalize(self.item(batch[key]), dim=-1)}

    def encode_text(self, text: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The text tower's inputs (``(n, 384)`` MiniLM embeddings, ``(n, vocabulary)`` TF-IDF rows, or
        ``(n, L, 384)`` token states with ``mask``) -> ``(n, d)`` unit norm (two towers) or MEE's
        ``(n, text_hidden)``."""
        hidden = self.text(text) if mask is None else self.text(text, mask)
        return hidden if self.modality == "video" else F.normalize(self.text_out(hidden), dim=-1)

    def similarity(self, text: torch.Tensor, items: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(n_text, n_items)`` from :meth:`encode_text` and :meth:`encode_items` outputs."""
        if self.modality == "video":
            return self.mee(text, items)
        return text @ items["item"].T

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        text_in, mask = batch["text"], batch.get("text_mask")
        b = len(batch["id"]) if "id" in batch else None
        if b is not None and text_in.shape[0] == b and text_in.ndim == (4 if mask is not None else 3):
            # data.captions_per_item: (b, k, ...) -> (b * k, ...), captions of item i at rows i * k .. i * k + k - 1
            text_in = text_in.flatten(0, 1)
            mask = None if mask is None else mask.flatten(0, 1)
        items, text = self.encode_items(batch), self.encode_text(text_in, mask)
        if self.modality == "video":
            return {"sim": self.similarity(text, items), "logit_scale": self.logit_scale()}
        return {"item_emb": items["item"], "text_emb": text, "logit_scale": self.logit_scale()}


def multi_positive_nce(logits: torch.Tensor, k: int, item_offset: int = 0, text_offset: int = 0,
                       logits_items: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE with ``k`` captions per item, all of them positives.

    ``logits`` ``(n * k, N)``: this rank's captions (item ``i``'s at rows ``i * k .. i * k + k - 1``) against
    every item; its caption-to-item term is the cross-entropy with label ``item_offset + row // k``.
    ``logits_items`` ``(n, N * k)``: this rank's items against every caption (default ``logits.T``, one rank);
    the item-to-caption term is ``-log`` of the softmax mass on the item's ``k`` captions (from column
    ``text_offset + i * k``), the training form of the any-of-k retrieval the protocols score. With ``k = 1``
    both terms are CLIP's."""
    n_text = logits.shape[0]
    labels = item_offset + torch.arange(n_text, device=logits.device) // k
    t2i = F.cross_entropy(logits, labels)
    li = logits.T if logits_items is None else logits_items  # (n, N * k)
    n = li.shape[0]
    cols = text_offset + torch.arange(n, device=li.device)[:, None] * k + torch.arange(k, device=li.device)
    i2t = (torch.logsumexp(li, dim=1) - torch.logsumexp(li.gather(1, cols), dim=1)).mean()
    return (t2i + i2t) / 2


def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """Symmetric InfoNCE: text-to-item and item-to-text cross-entropy with the pair on the diagonal; with
    ``data.captions_per_item`` k > 1, :func:`multi_positive_nce` (gathered over ranks for two towers)."""
    from xmodal.nn.objectives import gather_with_grad, info_nce

    scale = outputs["logit_scale"]
    if "sim" in outputs:
        logits = scale * outputs["sim"]  # (text, video)
        return multi_positive_nce(logits, logits.shape[0] // logits.shape[1])
    items, text = outputs["item_emb"], outputs["text_emb"]
    if text.shape[0] == items.shape[0]:
        return info_nce(items, text, scale)
    k = text.shape[0] // items.shape[0]
    all_items, item_offset = gather_with_grad(items)
    all_text, text_offset = gather_with_grad(text)
    return multi_positive_nce(scale * text @ all_items.T, k, item_offset, text_offset,
                              scale * items @ all_text.T)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _item_embeddings(model: RetrievalModel, dataset: RetrievalSet, batch_size: int) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(dataset), batch_size):
        items = [dataset.item(i) for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collate(items)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for k, v in model.encode_items(batch).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


@torch.no_grad()
def similarity_matrix(model: nn.Module, dataset: RetrievalSet, batch_size: int = 256) -> np.ndarray:
    """The ``(captions, items)`` similarities of ``dataset`` in the protocol's order, float32."""
    net: Any = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    items = _item_embeddings(net, dataset, batch_size)
    rows = []
    for start in range(0, len(dataset.text), batch_size):
        mask = None if dataset.text_mask is None else dataset.text_mask[start:start + batch_size].to(device)
        text = net.encode_text(dataset.text[start:start + batch_size].float().to(device), mask)
        rows.append(net.similarity(text, items).float().cpu())
    net.train(was_training)
    return torch.cat(rows).numpy()


def _score(sim: np.ndarray, dataset: RetrievalSet) -> dict[str, float]:
    from xmodal.metrics.retrieval_protocols import DIRECTIONS, evaluate_protocol

    out = evaluate_protocol(sim, dataset.layout)
    t2x, x2t = DIRECTIONS[dataset.layout.protocol]
    out[PRIMARY] = (out[f"{t2x}_R@1"] + out[f"{x2t}_R@1"]) / 2
    return out


def evaluate(model: nn.Module, dataset: RetrievalSet, batch_size: int = 256) -> dict[str, float]:
    """The protocol's metrics in percent (ranks as counts), as ``xmodal eval retrieval`` scores ``sim.npy``."""
    return _score(similarity_matrix(model, dataset, batch_size), dataset)


@torch.no_grad()
def _flat_items(model: RetrievalModel, dataset: RetrievalSet, batch_size: int) -> torch.Tensor:
    """One vector per item: the unit embedding, or the video experts' unit embeddings concatenated (MEE with
    equal weights)."""
    items = _item_embeddings(model, dataset, batch_size)
    if "item" in items:
        return items["item"].double().cpu()
    units = [model.mee.video[n](items[n]) for n in model.mee.names]
    return (torch.cat(units, dim=1) / len(units) ** 0.5).double().cpu()


def fit(model: nn.Module, train_set: Dataset, tc: TrainConfig, device: torch.device | None = None) -> nn.Module:
    """Train ``model`` with :func:`loss` as ``xmodal train`` trains the task's model in one process: AdamW (no
    decay on biases, norms and the temperature), linear warm-up then cosine decay, gradient clipping, the
    steps ``tc`` gives and the batches of epoch ``e`` in the order seed ``tc.seed`` fixes. The global RNGs are
    left as they were. Returns ``model`` in eval mode."""
    from xmodal.train.loop import cosine_with_warmup
    from xmodal.train.optim import build_adamw
    from xmodal.train.sampling import epoch_loader

    device = device or torch.device("cpu")
    per_epoch = len(cast(Any, train_set)) // tc.batch_size
    if per_epoch == 0:
        raise ConfigError(f"train.batch_size: {tc.batch_size} is larger than the {len(cast(Any, train_set))} "
                          "training samples")
    total = min(s for s in (tc.max_steps, tc.epochs and tc.epochs * per_epoch) if s)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_adamw(model, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, tc.warmup, tc.min_lr_ratio))
    step, epoch = 0, 0
    with torch.enable_grad():
        while step < total:
            for batch in epoch_loader(train_set, collate, seed=tc.seed, epoch=epoch, rank=0, world_size=1,
                                      batch_size=tc.batch_size, skip=0, steps=per_epoch, num_workers=0):
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                value = loss(model(batch), batch)
                opt.zero_grad(set_to_none=True)
                value.backward()
                if tc.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
                opt.step()
                sched.step()
                step += 1
                if step == total:
                    break
            epoch += 1
    return model.eval()


@dataclass
class BowBaseline:
    """What the ``bag_of_words`` baseline needs besides the evaluation set: the model's settings with the text
    tower switched to ``bag_of_words``, and the training run's settings (``train:``)."""

    modality: str
    model: ModelConfig
    n_mels: int
    train: dict[str, Any] | None
    twin_batches: bool


def train_bag_of_words(spec: BowBaseline, train_set: RetrievalSet, dataset: RetrievalSet,
                       device: torch.device) -> tuple[RetrievalModel, RetrievalSet]:
    """The trivial text tower trained end to end: TF-IDF over the training captions, its own linear map and its
    own item tower of the model's architecture, fitted from scratch (seed ``train.seed``) by :func:`fit` on the
    model's training data. Returns the trained baseline and ``dataset`` read by it."""
    from dataclasses import replace

    from xmodal.train.config import parse_train_config

    tc = parse_train_config(spec.train)
    captions = train_set.listing.captions
    train_bow = train_set.with_text(tfidf(captions, captions).float())
    test_bow = dataset.with_text(tfidf(captions, dataset.listing.captions).float())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tc.seed)
        bow = RetrievalModel(spec.modality, replace(spec.model, text="bag_of_words"), spec.n_mels,
                             text_dim=train_bow.text.shape[1])
        fit(bow, TwinBatches(train_bow) if spec.twin_batches else train_bow, tc, device)
    return bow, test_bow


def baselines(dataset: RetrievalSet, *, train_set: RetrievalSet, model: nn.Module, embed_dim: int,
              bow: BowBaseline, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """``random`` (seeded Gaussian caption and item embeddings), ``bag_of_words`` (:func:`train_bag_of_words`)
    and the probe ``bag_of_words_on_model_items`` (TF-IDF captions mapped by ridge least squares, lambda = 1,
    onto the trained model's item embeddings of the training pairs), scored as the model is."""
    gen = torch.Generator().manual_seed(0)
    n_caps, n_items = len(dataset.text), len(dataset)
    rand = F.normalize(torch.randn(n_caps, embed_dim, generator=gen), dim=1) @ \
        F.normalize(torch.randn(n_items, embed_dim, generator=gen), dim=1).T
    net: Any = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    train_items, test_items = _flat_items(net, train_set, batch_size), _flat_items(net, dataset, batch_size)
    net.train(was_training)
    captions = train_set.listing.captions
    x = tfidf(captions, captions)
    y = train_items[torch.tensor(train_set.listing.caption_item)]
    w = torch.linalg.solve(x.T @ x + torch.eye(x.shape[1], dtype=torch.float64), x.T @ y)
    text = F.normalize(tfidf(captions, dataset.listing.captions) @ w, dim=1)
    probe = text @ F.normalize(test_items, dim=1).T
    trained, test_bow = train_bag_of_words(bow, train_set, dataset, next(net.parameters()).device)
    return {"random": _score(rand.numpy(), dataset),
            "bag_of_words": _score(similarity_matrix(trained, test_bow, batch_size), dataset),
            "bag_of_words_on_model_items": _score(probe.float().numpy(), dataset)}


def write_similarity(model: nn.Module, dataset: RetrievalSet, path: Path, batch_size: int = 256) -> Path:
    """``sim.npy``: the ``(captions, items)`` float32 matrix in the protocol's order (``xmodal eval retrieval``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, similarity_matrix(model, dataset, batch_size))
    return path


# ----------------------------------------------------------------------------------------------- the task
def _dataset(d: DataConfig, m: ModelConfig, root: Path, file: str, media: str, train: bool, cache: Any,
             train_captions: list[str] | None = None) -> RetrievalSet:
    """The items of ``file`` with their media, and its captions as ``model.text`` reads them (a TF-IDF over
    ``train_captions``, the training set's, for ``bag_of_words``)."""
    from xmodal.errors import DataError
    from xmodal.metrics.retrieval_protocols import read_layout
    from xmodal.tasks.retrieval_data import decode_items, read_listing

    files = PROTOCOL_FILES[d.protocol]
    listing = read_listing(d.protocol, root / file, root / media, train, d.audio_name)
    settings = MediaSettings(d.image_size, d.frames, d.frame_size, d.sample_rate, d.n_mels, d.n_fft, d.hop_length,
                             d.max_seconds)
    text, mask = text_inputs(m.text, listing.captions, train_captions or listing.captions, cache, d.max_tokens)
    pixels = decode_items(files.modality, listing.paths, settings, cache)
    if m.item == "sprite_encoder" and files.modality == "image":  # the frozen trunk's grid replaces the pixels
        pixels = {"image_features": sprite_grid_features(pixels["image"], m.item_input, cache)}
    elif m.item == "sprite_encoder":  # video: per-frame grids for the appearance expert; motion keeps the frames
        n, t = pixels["frames"].shape[:2]
        grids = sprite_grid_features(pixels["frames"].flatten(0, 1), m.item_input, cache)
        pixels = {**pixels, "frame_features": grids.view(n, t, *grids.shape[1:])}
    ds = RetrievalSet(listing, pixels, text, train, d.shift, mask, d.captions_per_item)
    if not train:
        ds.layout = read_layout(root / file, d.protocol)
        if ds.layout.caption_item != listing.caption_item or ds.layout.n_items != len(listing.keys):
            raise DataError(f"the {d.protocol} layout and the items read disagree", source=root / file)
    return ds


def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    from xmodal.transforms.cache import TransformCache

    check(cfg)
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    files = PROTOCOL_FILES[d.protocol]
    train_file, eval_file = d.train_file or files.train_file, d.eval_file or files.eval_file
    if files.builder is None and d.build is not None:
        raise ConfigError(f"data.build: the {d.protocol} protocol has no scene builder; give data.root")
    root = pipeline.dataset_root(d.root, files.builder or "", d.build, [train_file, eval_file])
    cache = TransformCache(d.cache)
    train_set = _dataset(d, m, root, train_file, d.media if d.media is not None else files.train_media, True, cache)
    val_set = _dataset(d, m, root, eval_file, d.eval_media if d.eval_media is not None else files.eval_media, False,
                       cache, train_set.listing.captions)
    vocabulary = 0  # model.text: hybrid: the TF-IDF width over the training captions
    if m.text == "hybrid":
        vocabulary = tfidf(train_set.listing.captions, train_set.listing.captions[:1]).shape[1]
    model = RetrievalModel(files.modality, m, d.n_mels, text_dim=train_set.text.shape[-1], max_tokens=d.max_tokens,
                           vocabulary=vocabulary)
    bs = pipeline.eval_batch_size(cfg)
    bow = BowBaseline(files.modality, m, d.n_mels, cfg.get("train"), d.twin_batches)
    return TaskBundle(model=model, loss=loss, train_set=TwinBatches(train_set) if d.twin_batches else train_set,
                      collate=collate, val_set=val_set, evaluate=partial(evaluate, batch_size=bs), primary=PRIMARY,
                      # GradCache needs per-sample outputs; MEE's similarity couples the batch in the forward
                      coupled_loss=files.modality != "video",
                      baselines=partial(baselines, train_set=train_set, model=model, embed_dim=m.embed_dim,
                                        bow=bow, batch_size=bs),
                      predict=partial(write_similarity, batch_size=bs), split=Path(eval_file).stem)
