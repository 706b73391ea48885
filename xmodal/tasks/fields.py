"""Per-field transforms: the one place where a decoded value becomes the tensor its encoder expects.

Every task calls these functions and nothing else for decoding and featurising media, so the whole set can be
swapped for a shared, content-hashed transform layer without touching the tasks. One function per kind of field:

- :func:`image_uint8`: an image file -> ``(3, H, W)`` uint8;
- :func:`log_mels`: waveforms of one item -> ``(n_mels, frames)`` log-mels, one batched STFT;
- :func:`sentence_embeddings`: captions -> MiniLM embeddings ``(N, 384)``;
- :func:`field_transform`: the transform of a manifest field by its modality (applied after
  :func:`xmodal.data.manifest.decode_field`), e.g. token ids for text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.modalities import ModalitySpec


def image_uint8(path: Path) -> torch.Tensor:
    """An image file as ``(3, H, W)`` uint8 RGB."""
    from xmodal.data import io

    img = io.read_image(path, "RGB")  # (H, W, 3) uint8
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


@lru_cache(maxsize=8)
def mel_module(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, fmax: float) -> nn.Module:
    """One log-mel module per setting (building the filterbank per file would dominate decoding)."""
    from xmodal.data.features import MelSpectrogram

    return MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmax=fmax, log=True,
                          top_db=80.0)


def log_mels(wavs: list[torch.Tensor], mel: nn.Module, hop_length: int) -> list[torch.Tensor]:
    """float16 log-mels ``(n_mels, frames)`` of several recordings of one item with one batched STFT.

    Zero padding at the end is exactly the padding centred frames see anyway, so the first
    ``1 + len // hop`` frames of each row equal the unbatched spectrogram."""
    padded = nn.utils.rnn.pad_sequence(wavs, batch_first=True)  # (voices, samples)
    spec = mel(padded).to(torch.float16)  # (voices, n_mels, frames)
    return [spec[v, :, : 1 + len(w) // hop_length].clone() for v, w in enumerate(wavs)]


def sentence_embeddings(texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """MiniLM sentence embeddings ``(N, 384)`` float32, unit norm (the frozen text tower, computed once)."""
    from xmodal.pretrained.minilm import encode

    return encode([str(t) for t in texts], batch_size=batch_size).float()


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    from xmodal.pretrained.minilm import model_path

    return AutoTokenizer.from_pretrained(str(model_path()))


def token_ids(text: str, max_length: int = 128) -> torch.Tensor:
    """Word-piece ids ``(tokens,)`` int64 of ``text`` with the MiniLM tokenizer ([CLS] ... [SEP])."""
    ids = _tokenizer()(text, truncation=True, max_length=max_length)["input_ids"]
    return torch.tensor(ids, dtype=torch.int64)


def field_transform(field: str, spec: ModalitySpec, family: str | None,
                    vocabularies: Mapping[str, list[str]] | None = None) -> Callable[[Any], Any] | None:
    """The transform after decoding for ``field`` of modality ``spec`` whose encoder is ``family``
    (None: the spec's default); ``vocabularies`` maps categorical fields to their category lists."""
    family = family or spec.default_encoder
    if spec.is_text:
        return None if family == "minilm" else token_ids  # the MiniLM tower tokenises strings itself
    if spec.name == "waveform":
        return lambda x: x if x.dim() == 2 else x[None]  # (channels, time)
    if spec.name == "categorical":
        vocab = (vocabularies or {}).get(field)
        if vocab is None:
            raise ConfigError(f"data.fields.{field}: a categorical field needs its categories")
        index = {v: i for i, v in enumerate(vocab)}

        def category(value: Any) -> torch.Tensor:
            if str(value) not in index:
                raise ConfigError(f"{field}: category {value!r} was not seen in training")
            return torch.tensor(index[str(value)])

        return category
    if spec.name == "numeric":
        return lambda x: torch.as_tensor(x, dtype=torch.float32).reshape(-1)
    return None


def token_features(texts: list[str], max_length: int = 32, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM's last hidden states per word piece, ``(N, max_length, 384)`` float32 zero-padded, and the mask
    ``(N, max_length)`` (True = a token): the frozen, pretrained text tower for models that fuse text tokens
    (TransVG's text branch, EVE's hypothesis branch)."""
    from xmodal.pretrained.minilm import MiniLMEncoder

    encoder = MiniLMEncoder()
    feats = torch.zeros(len(texts), max_length, 384)
    mask = torch.zeros(len(texts), max_length, dtype=torch.bool)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = [str(t) for t in texts[start:start + batch_size]]
            tok = encoder.tokenizer(chunk, padding="max_length", truncation=True, max_length=max_length,
                                    return_tensors="pt")
            hidden = encoder.model(**tok).last_hidden_state  # (chunk, max_length, 384)
            valid = tok["attention_mask"].bool()
            feats[start:start + len(chunk)] = hidden * valid[..., None]
            mask[start:start + len(chunk)] = valid
    return feats, mask


def cached_images(paths: list[Path], cache: Any) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8 of image files of one size, decoded once: the stack is kept in the
    :class:`xmodal.transforms.cache.TransformCache` ``cache`` under the files' names and bytes."""
    from xmodal.errors import DataError
    from xmodal.transforms.cache import file_digest, make_key

    for p in paths:
        if not p.is_file():
            raise DataError(f"image {p.name} is missing", source=p)
    content = "".join(f"{p.name}:{file_digest(p)};" for p in paths)
    key = make_key(content, "image_uint8_stack", {})

    def decode() -> dict[str, torch.Tensor]:
        images = [image_uint8(p) for p in paths]
        sizes = {tuple(im.shape) for im in images}
        if len(sizes) > 1:
            raise DataError(f"images of several sizes {sorted(sizes)}: a stack needs one size", source=paths[0])
        return {"images": torch.stack(images)}

    return cache.get_or_compute(key, decode)["images"]


def cached_token_features(texts: list[str], max_length: int, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_features` of ``texts`` (float16 states, mask), kept in the transform cache under the texts."""
    import hashlib

    from xmodal.transforms.cache import make_key

    content = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    key = make_key(content, "minilm_token_features", {"max_length": max_length})

    def encode() -> dict[str, torch.Tensor]:
        feats, mask = token_features(texts, max_length)
        return {"tokens": feats.half(), "mask": mask}

    found = cache.get_or_compute(key, encode)
    return found["tokens"], found["mask"]
