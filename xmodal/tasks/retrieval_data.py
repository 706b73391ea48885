"""The data of the cross-modal retrieval task: the benchmarks' official files read into items and captions, and the
items' media decoded once into fixed-size tensors kept in the :mod:`xmodal.transforms` cache.

Protocols (:mod:`xmodal.metrics.retrieval_protocols`) and what they read:

- ``coco-5k`` / ``coco-1k`` / ``flickr``: Karpathy JSON; training on ``train`` and ``restval`` images, every
  sentence; images ``<media>/<filepath>/<filename>`` (``filepath`` only where COCO gives it).
- ``msrvtt-1ka``: ``MSRVTT_data.json`` for training (videos of split ``train``, their sentences) and the 1k-A CSV for
  the test; videos ``<media>/<video_id>.mp4``.
- ``audiocaps``: the train and test CSVs; clips ``<media>/<audio_name>`` with ``{youtube_id}`` and ``{start_time}``
  filled in.
- ``clotho``: the development and evaluation CSVs; files ``<media>/<file_name>``.

Captions are kept in the protocol's order, so that a (captions, items) similarity matrix of the evaluation set is
the one ``xmodal eval retrieval`` scores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from xmodal.errors import ConfigError, DataError
from xmodal.tasks import fields as xfields


@dataclass(frozen=True)
class ProtocolFiles:
    modality: str  # image, video or audio
    builder: str | None  # the scene builder writing this layout
    train_file: str
    eval_file: str
    train_media: str
    eval_media: str


PROTOCOL_FILES = {
    "coco-5k": ProtocolFiles("image", "coco-karpathy-scenes", "dataset_coco.json", "dataset_coco.json", "", ""),
    "coco-1k": ProtocolFiles("image", "coco-karpathy-scenes", "dataset_coco.json", "dataset_coco.json", "", ""),
    "flickr": ProtocolFiles("image", None, "dataset_flickr30k.json", "dataset_flickr30k.json", "images", "images"),
    "msrvtt-1ka": ProtocolFiles("video", "msrvtt-scenes", "MSRVTT_data.json", "MSRVTT_JSFUSION_test.csv",
                                "videos/all", "videos/all"),
    "audiocaps": ProtocolFiles("audio", "audiocaps-scenes", "train.csv", "test.csv", "audio", "audio"),
    "clotho": ProtocolFiles("audio", "clotho-scenes", "clotho_captions_development.csv",
                            "clotho_captions_evaluation.csv", "development", "evaluation"),
}


@dataclass(frozen=True)
class MediaSettings:
    image_size: int = 64
    frames: int = 8
    frame_size: int = 48
    sample_rate: int = 16000
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 320
    max_seconds: float = 10.0


@dataclass
class Listing:
    """Items (their media files) and captions (the item each describes), in the protocol's order."""

    keys: list[str]
    paths: list[Path]
    captions: list[str]
    caption_item: list[int]


def _group(pairs: list[tuple[str, Path, str]]) -> Listing:
    """Items in first-seen order from ``(key, path, caption)`` rows."""
    slot: dict[str, int] = {}
    listing = Listing([], [], [], [])
    for key, path, text in pairs:
        if key not in slot:
            slot[key] = len(listing.keys)
            listing.keys.append(key)
            listing.paths.append(path)
        listing.captions.append(text)
        listing.caption_item.append(slot[key])
    return listing


def read_listing(protocol: str, path: Path, media: Path, train: bool, audio_name: str = "{youtube_id}.wav") -> Listing:
    """The items and captions of ``path`` under ``protocol``: training captions (every one), or the evaluation's
    in the order :func:`xmodal.metrics.retrieval_protocols.read_layout` assigns them."""
    if protocol in ("coco-5k", "coco-1k", "flickr"):
        from xmodal.data.benchmarks.karpathy import read_karpathy
        from xmodal.metrics.retrieval_protocols import KARPATHY_CAPTIONS_PER_IMAGE

        karpathy = read_karpathy(path)
        images = karpathy.split("train") + karpathy.split("restval") if train else karpathy.split("test")
        rows = []
        for im in images:
            sents = im.sentences if train else im.sentences[:KARPATHY_CAPTIONS_PER_IMAGE]
            rows += [(f"{im.imgid}", media / (im.filepath or "") / im.filename, s.raw) for s in sents]
        return _group(rows)
    if protocol == "msrvtt-1ka":
        from xmodal.data.benchmarks.msrvtt import read_msrvtt_1ka, read_msrvtt_data

        if train:
            msr = read_msrvtt_data(path)
            wanted = {v.video_id for v in msr.videos if v.split == "train"}
            rows = [(s.video_id, media / f"{s.video_id}.mp4", s.caption) for s in msr.sentences if s.video_id in wanted]
            return _group(rows)
        pairs = read_msrvtt_1ka(path)
        return Listing([p.video_id for p in pairs], [media / f"{p.video_id}.mp4" for p in pairs],
                       [p.sentence for p in pairs], list(range(len(pairs))))
    if protocol == "audiocaps":
        from xmodal.data.benchmarks.audiocaps import read_audiocaps

        return _group([(f"{c.youtube_id}@{c.start_time}",
                        media / audio_name.format(youtube_id=c.youtube_id, start_time=c.start_time), c.caption)
                       for c in read_audiocaps(path)])
    if protocol == "clotho":
        from xmodal.data.benchmarks.clotho import read_clotho

        return _group([(c.file_name, media / c.file_name, t) for c in read_clotho(path) for t in c.captions])
    raise ConfigError(f"data.protocol: unknown {protocol!r}; choose one of {', '.join(PROTOCOL_FILES)}")


# ------------------------------------------------------------------------------------------------ decoding
def _square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``(n, 3, H, W)`` uint8 resized to ``(n, 3, size, size)`` (bilinear, antialiased) unless already that size."""
    if frames.shape[-2:] == (size, size):
        return frames
    out = F.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _log_mel(wav: np.ndarray, rate: int, s: MediaSettings) -> torch.Tensor:
    """``(n_mels, frames)`` float16 log-mel of the first ``max_seconds`` (zero-padded), standardised per clip."""
    from xmodal.data.io import resample

    if wav.ndim == 2:
        wav = wav.mean(0)
    if rate != s.sample_rate:
        wav = resample(wav, rate, s.sample_rate)
    n = round(s.max_seconds * s.sample_rate)
    x = np.zeros(n, np.float32)
    x[: min(n, len(wav))] = wav[:n]
    mel = xfields.mel_module(s.sample_rate, s.n_fft, s.hop_length, s.n_mels, s.sample_rate / 2)
    spec = mel(torch.from_numpy(x)[None])[0]  # (n_mels, frames)
    return ((spec - spec.mean()) / spec.std().clamp_min(1e-5)).half()


def _decode(modality: str, path: Path, s: MediaSettings) -> dict[str, torch.Tensor]:
    from xmodal.data import io

    if not path.is_file():
        raise DataError(f"{modality} file {path.name} is missing", source=path)
    if modality == "image":
        return {"image": _square(xfields.image_uint8(path)[None], s.image_size)[0]}
    if modality == "audio":
        wav, rate = io.read_audio(path)
        return {"audio": _log_mel(wav, rate, s)}
    clip = io.read_video(path, num_frames=s.frames, with_audio=True)
    if clip.frames.shape[0] != s.frames:
        raise DataError(f"{path.name}: {clip.frames.shape[0]} frames, need {s.frames}", source=path)
    frames = torch.from_numpy(np.ascontiguousarray(clip.frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    assert clip.audio is not None and clip.sample_rate is not None  # with_audio=True raises otherwise
    return {"frames": _square(frames, s.frame_size), "audio": _log_mel(clip.audio, clip.sample_rate, s)}


def decode_items(modality: str, paths: list[Path], s: MediaSettings, cache: Any) -> dict[str, torch.Tensor]:
    """Every item's media stacked: ``image (N, 3, S, S)`` uint8; ``audio (N, n_mels, frames)`` float16;
    ``frames (N, T, 3, S, S)`` uint8 and ``audio`` for video. Kept in the transform cache ``cache`` under the
    files' names, bytes and the settings."""
    from dataclasses import asdict

    from xmodal.transforms.cache import file_digest, make_key

    for p in paths:
        if not p.is_file():
            raise DataError(f"{modality} file {p.name} is missing", source=p)
    content = hashlib.sha256("".join(f"{p.name}:{file_digest(p)};" for p in paths).encode()).hexdigest()
    key = make_key(content, f"retrieval_{modality}", asdict(s))

    def compute() -> dict[str, torch.Tensor]:
        parts = [_decode(modality, p, s) for p in paths]
        return {k: torch.stack([d[k] for d in parts]) for k in parts[0]}

    return dict(cache.get_or_compute(key, compute))


def caption_embeddings(texts: list[str], cache: Any) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings ``(N, 384)`` of ``texts``, kept in the transform cache."""
    from xmodal.transforms.cache import make_key

    key = make_key(hashlib.sha256("\0".join(texts).encode()).hexdigest(), "minilm_sentence", {})
    return cache.get_or_compute(key, lambda: {"text": xfields.sentence_embeddings(texts).half()})["text"]


def _translate(x: torch.Tensor, shift: int) -> torch.Tensor:
    """``(..., H, W)`` moved by a random offset of up to ``shift`` pixels on each axis, edges replicated (never
    mirrored: a flip would swap left and right, which captions state)."""
    h, w = x.shape[-2:]
    dy, dx = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,)))
    flat = x.reshape(-1, 1, h, w)
    padded = F.pad(flat, (shift, shift, shift, shift), mode="replicate")
    return padded[..., dy:dy + h, dx:dx + w].reshape(x.shape)


# ------------------------------------------------------------------------------------------------- dataset
class RetrievalSet(Dataset):
    """Items with their media, and captions with the item each describes.

    A sample is one item: ``{"id", <media fields>, "text"}`` with the text tower's input for one of its captions
    (``text[c]``: the MiniLM embedding ``(384,)``, TF-IDF row or token states; with ``text_mask``, also
    ``"text_mask"``), drawn afresh each time in training (so an epoch sees every item once and a batch never
    holds two captions of one item, which would be false negatives) and the first one otherwise. With
    ``captions_per_item`` k > 1 a training sample holds k distinct captions of its item (``text`` ``(k, ...)``),
    all positives of the item in the multi-positive loss."""

    def __init__(self, listing: Listing, media: dict[str, torch.Tensor], text: torch.Tensor, train: bool,
                 shift: int = 0, text_mask: torch.Tensor | None = None, captions_per_item: int = 1) -> None:
        if not listing.keys:
            raise DataError("no items", source="retrieval data")
        if len(text) != len(listing.captions) or (text_mask is not None and len(text_mask) != len(text)):
            raise DataError(f"{len(text)} caption inputs for {len(listing.captions)} captions",
                            source="retrieval data")
        self.listing, self.media, self.text, self.train = listing, media, text, train
        self.text_mask = text_mask  # (captions, tokens) True = a token, for token-state inputs
        self.shift = shift if train else 0  # training images and frames move by up to this many pixels
        self.layout: Any = None  # the evaluation's RetrievalLayout (read from the annotation file)
        self.captions_of: list[list[int]] = [[] for _ in listing.keys]
        for c, i in enumerate(listing.caption_item):
            self.captions_of[i].append(c)
        # data.captions_per_item: a training sample carries k distinct captions of its item (multi-positive loss)
        self.captions_per_item = captions_per_item if train else 1
        fewest = min(len(c) for c in self.captions_of)
        if self.captions_per_item > fewest:
            raise DataError(f"data.captions_per_item: {captions_per_item} captions per training item asked, but "
                            f"an item has only {fewest}", source="retrieval data")

    def __len__(self) -> int:
        return len(self.listing.keys)

    def item(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.listing.keys[i]}
        for k, v in self.media.items():
            out[k] = v[i].float() / 255.0 if v.dtype == torch.uint8 else v[i].float()
            if self.shift and k in ("image", "frames"):
                out[k] = _translate(out[k], self.shift)
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        caps = self.captions_of[i]
        if self.captions_per_item > 1:  # k distinct captions: text (k, ...), mask (k, L)
            picks = [caps[int(j)] for j in torch.randperm(len(caps))[: self.captions_per_item]]
            out = {**self.item(i), "text": self.text[picks].float()}
            if self.text_mask is not None:
                out["text_mask"] = self.text_mask[picks]
            return out
        c = caps[int(torch.randint(len(caps), ()))] if self.train else caps[0]
        out = {**self.item(i), "text": self.text[c].float()}
        if self.text_mask is not None:
            out["text_mask"] = self.text_mask[c]
        return out

    def with_text(self, text: torch.Tensor, text_mask: torch.Tensor | None = None) -> RetrievalSet:
        """The same items and captions (media shared, not copied) read by another text tower."""
        other = RetrievalSet(self.listing, self.media, text, self.train, self.shift, text_mask,
                             self.captions_per_item)
        other.layout = self.layout
        return other


class TwinBatches(Dataset):
    """``data.twin_batches``: the training items in twin pairs ``(2k, 2k + 1)``, so that a batch holds every
    hard-negative twin beside its original (the scene builders write an item's twin right after it). A sample
    is the pair's two samples; :func:`collate` lays them out one after the other, so ``train.batch_size``
    counts pairs. An odd last item, with no twin, is left out."""

    def __init__(self, items: RetrievalSet) -> None:
        if len(items) < 2:
            raise DataError(f"data.twin_batches: {len(items)} training item(s), need at least one pair",
                            source="retrieval data")
        self.items = items

    def __len__(self) -> int:
        return len(self.items) // 2

    def __getitem__(self, k: int) -> list[dict[str, Any]]:
        return [self.items[2 * k], self.items[2 * k + 1]]


def collate(samples: list[Any]) -> dict[str, Any]:
    """A batch of samples, or of :class:`TwinBatches` pairs (flattened: original, twin, original, twin, ...)."""
    from torch.utils.data import default_collate

    flat: list[dict[str, Any]] = [x for s in samples for x in (s if isinstance(s, list) else [s])]
    batch = default_collate([{k: v for k, v in s.items() if k != "id"} for s in flat])
    batch["id"] = [s["id"] for s in flat]
    return batch
