"""A sound encoder trained here, on the vocabulary's own sounds: the stand-in for VGGish (the AudioSet-trained
128-d audio embedding the audio-visual benchmarks distribute), since no weights can be downloaded.

:class:`SoundEncoder` is a small CNN over the 1-s log-mel patch (64 bands, the parameters of
:mod:`xmodal.tasks.av_segments`) giving a 128-d embedding and, from it, which vocabulary classes sound in the
second (multi-label). It is trained (:func:`train_sound_encoder`) on mixtures of zero to three of the
vocabulary's sources from the *training* pool only (:func:`xmodal.data.synth.sources.load_source` with
``split="train"``), each varied as the scene renderer varies it (:func:`xmodal.data.synth.scene_render._vary`:
pitch, playback rate and reverberation drawn from the training split's ranges; gain), started at a random
point, plus brown noise at the engine's levels. Held-out melodies, sentences, voices and the held-out variation
ranges are never drawn.

:func:`load_sound_encoder` trains on first use and caches the weights with
:class:`xmodal.transforms.cache.TransformCache` under a key of the recipe and the bytes of every training
source (seeded, one intra-op thread: the same inputs give the same weights).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.data.synth import scenes, sources, vocabulary

__all__ = ["SOUND_CLASSES", "SoundEncoder", "SoundRecipe", "encode_segments", "load_sound_encoder",
           "log_mel", "log_mel_patches", "mixtures", "sound_bank",
           "train_sound_encoder"]

SAMPLE_RATE = sources.SAMPLE_RATE
SOUND_CLASSES: tuple[str, ...] = vocabulary.SOUNDING
EMBEDDING = 128
N_MELS, N_FFT, HOP = 64, 1024, 256


@dataclass(frozen=True)
class SoundRecipe:
    """Everything the trained weights depend on besides the sources' bytes (part of the cache key)."""

    version: int = 1
    seed: int = 0
    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    versions_per_source: int = 6  # varied renderings of each training recording
    max_sources: int = 3


class SoundEncoder(nn.Module):
    """``forward(log_mel (N, 64, frames)) -> {"embedding": (N, 128), "logits": (N, classes)}``."""

    mean: torch.Tensor  # buffers: the training mixtures' log-mel level, fixed before training
    std: torch.Tensor

    def __init__(self, num_classes: int = len(SOUND_CLASSES)) -> None:
        super().__init__()
        widths = (1, 16, 32, 64)
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(2 * widths[-1], EMBEDDING), nn.ReLU())
        self.classifier = nn.Linear(EMBEDDING, num_classes)
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, log_mel: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.trunk(((log_mel - self.mean) / self.std).unsqueeze(1))  # (N, 64, 8, frames / 8)
        # mean and max over time and frequency: what sounds, and its loudest moment
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], -1)
        embedding = self.embed(pooled)
        return {"embedding": embedding, "logits": self.classifier(embedding)}


@functools.cache
def _mel_basis() -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float()  # (64, 513)


def log_mel(waves: torch.Tensor) -> torch.Tensor:
    """``(N, samples)`` -> ``(N, 64, frames)`` log-mel power spectrogram, as ``librosa.feature.melspectrogram``
    (centred frames, zero padding, Hann window, Slaney mel filters) computed in one batched torch STFT: the
    same numbers for the training mixtures and for clips, many times faster than one librosa call each."""
    spec = torch.stft(waves, N_FFT, HOP, window=torch.hann_window(N_FFT), center=True, pad_mode="constant",
                      return_complex=True).abs().pow(2)
    return torch.log(_mel_basis() @ spec + 1e-6)


def log_mel_patches(mono: np.ndarray, segments: int) -> torch.Tensor:
    """``(segments, 64, frames)`` log-mel patches of equal length, one per equal segment of ``mono``."""
    spec = log_mel(torch.from_numpy(np.ascontiguousarray(mono, np.float32))[None])[0]  # (mels, frames)
    width = max(1, spec.shape[1] // segments)
    edges = np.linspace(0, spec.shape[1] - width, segments).round().astype(int)
    return torch.stack([spec[:, a: a + width] for a in edges])


# ---------------------------------------------------------------- training mixtures

def sound_bank(rng: np.random.Generator, recipe: SoundRecipe, pool: str = "train") -> list[list[np.ndarray]]:
    """Per class, varied renderings of its recordings, as the scene renderer varies a source: the training
    pool's recordings and ranges, or (``pool="heldout"``, for tests) the held-out ones."""
    from xmodal.data.synth.scene_render import _vary

    ranges = scenes.SPLIT_RANGES[pool]
    split = "train" if pool == "train" else "test"
    bank = []
    for name in SOUND_CLASSES:
        src = vocabulary.get_class(name).source
        row = []
        for v in range(sources.variants(src, split)):
            whole = sources.load_source(src, v, split)
            for _ in range(max(1, recipe.versions_per_source // sources.variants(src, split))):
                # a 3-s excerpt: batches take 1-s crops, and varying the whole 8-s melody costs 3 times more
                start = int(rng.integers(0, max(1, len(whole) - 3 * SAMPLE_RATE)))
                wave = whole[start: start + 3 * SAMPLE_RATE]
                sound = {"rate": scenes._draw(rng, ranges["rate"]), "reverb_t60": scenes._draw(rng, ranges["reverb_t60"]),
                         "noise_seed": int(rng.integers(0, 2**31)),
                         "pitch": scenes._draw(rng, ranges["pitch"]) if rng.random() < 0.5 else 0.0}
                row.append(_vary(wave, sound))
        bank.append(row)
    return bank


def mixtures(rng: np.random.Generator, bank: list[list[np.ndarray]], n: int,
             most: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` one-second mixtures (n, samples) and their multi-hot labels (n, classes)."""
    ranges = scenes.SPLIT_RANGES["train"]
    waves = np.zeros((n, SAMPLE_RATE), np.float32)
    labels = np.zeros((n, len(bank)), np.float32)
    for i in range(n):
        for k in rng.choice(len(bank), size=int(rng.integers(0, most + 1)), replace=False):
            src = bank[int(k)][int(rng.integers(0, len(bank[int(k)])))]
            loop = np.tile(np.concatenate([src, np.zeros(int(0.15 * SAMPLE_RATE), np.float32)]),
                           int(np.ceil(2 * SAMPLE_RATE / (len(src) + 1))) + 1)
            start = int(rng.integers(0, len(loop) - SAMPLE_RATE))
            # a source covering most of the second, as a segment label asks (sounding for more than half)
            a = int(rng.integers(0, SAMPLE_RATE // 4)) if rng.random() < 0.3 else 0
            waves[i, a:] += 10 ** (scenes._draw(rng, ranges["gain_db"]) / 20) * loop[start: start + SAMPLE_RATE - a]
            labels[i, int(k)] = 1
        noise = np.cumsum(rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        noise -= np.convolve(noise, np.ones(801, np.float32) / 801, mode="same")
        noise *= 10 ** (rng.uniform(-50, -40) / 20) / max(float(np.sqrt(np.mean(noise**2))), 1e-9)
        waves[i] = np.clip(waves[i] + noise, -1, 1)
    return waves, labels


def train_sound_encoder(recipe: SoundRecipe = SoundRecipe()) -> SoundEncoder:
    """Train a :class:`SoundEncoder` from ``recipe`` (fresh mixtures every step, one intra-op thread). Returns it
    in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(recipe.seed)
        rng = np.random.default_rng([recipe.seed, 11])
        bank = sound_bank(rng, recipe)
        model = SoundEncoder()
        probe = log_mel(torch.from_numpy(mixtures(rng, bank, 64, 2)[0]))
        model.mean.fill_(float(probe.mean()))
        model.std.fill_(float(probe.std()))
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps,
                                                    pct_start=0.15)
        model.train()
        for _ in range(recipe.steps):
            waves, labels = mixtures(rng, bank, recipe.batch_size, recipe.max_sources)
            x = log_mel(torch.from_numpy(waves))
            loss = F.binary_cross_entropy_with_logits(model(x)["logits"], torch.from_numpy(labels))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


# ---------------------------------------------------------------- cached weights and inference

def _inputs_digest() -> str:
    """sha256 of every training recording of the vocabulary (the data the weights learn)."""
    h = hashlib.sha256()
    for name in SOUND_CLASSES:
        src = vocabulary.get_class(name).source
        for v in range(sources.variants(src, "train")):
            h.update(f"{src}:{v}\0".encode() + sources.load_source(src, v, "train").tobytes())
    return h.hexdigest()


def weights_key(recipe: SoundRecipe = SoundRecipe()) -> str:
    from xmodal.transforms.cache import make_key

    return make_key(_inputs_digest(), "sound_encoder", asdict(recipe))


def load_sound_encoder(cache_dir: str | None = None, recipe: SoundRecipe = SoundRecipe()) -> SoundEncoder:
    """The encoder trained from ``recipe``: from the cache, or trained now and cached. Eval mode, no grads."""
    from xmodal.transforms.cache import TransformCache

    state = TransformCache(cache_dir).get_or_compute(
        weights_key(recipe), lambda: train_sound_encoder(recipe).state_dict(), meta={"recipe": str(asdict(recipe))})
    model = SoundEncoder()
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def encode_segments(encoder: SoundEncoder, mono: np.ndarray, segments: int) -> dict[str, torch.Tensor]:
    """``{"embedding": (segments, 128), "probs": (segments, classes)}`` of a mono 16-kHz waveform."""
    out = encoder(log_mel_patches(mono, segments))
    return {"embedding": out["embedding"], "probs": out["logits"].sigmoid()}
