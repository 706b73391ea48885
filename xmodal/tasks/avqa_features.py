"""Per-segment features of the stereo 10-s clips of audio-visual question answering (MUSIC-AVQA).

From an MP4 with an audio track (decoded with :func:`xmodal.data.io.read_video`), every 1-s segment gets:

- ``audio`` ``(T, 192)``: the mean and standard deviation over the segment of the 64-band log-mel spectrogram
  of the mid channel ``(left + right) / 2`` (librosa, 16 kHz, 1024-point FFT, hop 256), then the mean of the
  left-minus-right log-mel difference per band: the interaural level difference, where "left or right" is
  heard (zero for a mono track, which is used as both sides);
- ``visual``: either (``visual="pixels"``) ``(T, 7, 7, 192)``, the frames average-pooled to 56 x 56 and cut
  into the 7 x 7 grid of the benchmark's feature maps, each cell's 8 x 8 RGB pixels as its channels, averaged
  over the segment's frames (the task's small CNN learns from these cells end to end); or
  (``visual="sprite_encoder"``) ``(T, 7, 7, 64)``, the segment's mean of the 7 x 7 maps of
  :mod:`xmodal.data.synth.sprite_encoder`, a frame CNN trained here on the vocabulary's sprites (the stand-in
  for the ImageNet CNN whose maps the benchmark distributes: no pretrained weights can be downloaded here);
- ``audio_power`` ``(T, 64)``: the natural log of the segment's mean over frames of the left plus the right
  mel power per band: the arithmetic power the sources add up to, whatever their pan (constant-power panning
  keeps ``left**2 + right**2`` of each source), where the mean log-mel of the mid channel is a geometric mean
  that a percussive source's decays pull down and a source's pan lowers by up to 3 dB (what
  :func:`xmodal.tasks.avqa_evidence.clip_loudness` unmixes);
- ``acoustic`` ``(T, 9)``: :func:`xmodal.data.acoustic.segment_acoustic_features` of the mid channel (pitch,
  spectral shape, onsets);
- with ``visual="sprite_encoder"``, the encoders' class evidence over :data:`EVIDENCE_CLASSES` (the
  instruments, in the vocabulary's order): ``audio_classes`` ``(T, 8)``, which instruments the sound encoder
  (:mod:`xmodal.data.synth.sound_encoder`) hears in the mid channel (sigmoid), and ``visual_classes``
  ``(T, 7, 7, 8)``, each cell's class probabilities from the sprite encoder's classifier (softmax), averaged
  over the segment's frames. Summed over cells, a class's probabilities count its cells: the objectness that
  counting questions need, which a softmax-weighted mean over cells loses.

Features are cached with :class:`xmodal.transforms.cache.TransformCache`, keyed by the file's bytes,
:data:`PARAMS` and the encoders' weights. The encoders come from the default cache (trained there on first use,
one set of weights per machine, shared with :mod:`xmodal.tasks.av_segments`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from xmodal.data.synth import vocabulary
from xmodal.errors import DataError

if TYPE_CHECKING:
    from xmodal.data.synth.sound_encoder import SoundEncoder
    from xmodal.data.synth.sprite_encoder import SpriteEncoder

Encoders = tuple["SoundEncoder", "SpriteEncoder"]

SAMPLE_RATE = 16000
GRID, CELL, MELS, N_FFT, HOP, SEGMENTS = 7, 8, 64, 1024, 256, 10
PARAMS: dict[str, Any] = {"version": 3, "segments": SEGMENTS, "sample_rate": SAMPLE_RATE, "n_mels": MELS,
                          "n_fft": N_FFT, "hop": HOP, "grid": GRID, "cell": CELL, "stereo": "mid+ild"}
AUDIO_DIM, VISUAL_DIM, ACOUSTIC_DIM = 3 * MELS, 3 * CELL * CELL, 9
EVIDENCE_CLASSES: tuple[str, ...] = vocabulary.INSTRUMENTS


def mel_power(y: np.ndarray) -> np.ndarray:
    """``(frames, MELS)``: librosa's mel power spectrogram of a 16-kHz waveform (Slaney filters)."""
    import librosa

    return librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=MELS).T


def _log_mel(y: np.ndarray) -> np.ndarray:
    return np.log(mel_power(y) + 1e-6)  # (frames, mels)


def mel_band_widths(bands: int = MELS) -> np.ndarray:
    """``(bands,)``: half the width in Hz of each of librosa's Slaney mel filters (0 to 8 kHz), the inverse of
    the area normalisation that divides each filter by it. Neighbouring triangles sum to one over the spectrum,
    so the mel powers times these widths sum to the spectrum's power."""
    import librosa

    edges = librosa.mel_frequencies(bands + 2, fmin=0.0, fmax=SAMPLE_RATE / 2)
    return (edges[2:] - edges[:-2]) / 2


def audio_segments(stereo: np.ndarray, segments: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(segments, 192)`` audio and ``(segments, 64)`` audio power from ``(2, samples)`` float audio (see the
    module docstring)."""
    mid = _log_mel(stereo.mean(axis=0))
    left, right = _log_mel(stereo[0]), _log_mel(stereo[1])
    ild, power = left - right, np.exp(left) + np.exp(right)
    edges = np.linspace(0, mid.shape[0], segments + 1).round().astype(int)
    audio = np.stack([np.concatenate([mid[a:b].mean(0), mid[a:b].std(0), ild[a:b].mean(0)])
                      for a, b in pairwise(edges)]).astype(np.float32)
    return audio, np.log(np.stack([power[a:b].mean(0) for a, b in pairwise(edges)])).astype(np.float32)


def visual_segments(frames: np.ndarray, segments: int = 10) -> np.ndarray:
    """``(segments, 7, 7, 192)`` from uint8 ``(F, H, W, 3)`` frames."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (F, 3, H, W)
    x = torch.nn.functional.adaptive_avg_pool2d(x, GRID * CELL)  # (F, 3, 56, 56)
    cells = x.reshape(-1, 3, GRID, CELL, GRID, CELL).permute(0, 2, 4, 1, 3, 5).reshape(-1, GRID, GRID, VISUAL_DIM)
    edges = np.linspace(0, cells.shape[0], segments + 1).round().astype(int)
    return torch.stack([cells[a:max(b, a + 1)].mean(0) for a, b in pairwise(edges)]).numpy()


def encoder_segments(encoder: SpriteEncoder, frames: np.ndarray, segments: int = 10
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The sprite encoder's maps ``(segments, 7, 7, 64)`` of uint8 ``(F, H, W, 3)`` frames and its cells' class
    probabilities over :data:`EVIDENCE_CLASSES` ``(segments, 7, 7, 8)``, both averaged per segment."""
    from xmodal.data.synth.sprite_encoder import CLASS_NAMES, encode_frames

    out = encode_frames(encoder, frames)
    maps, probs = out["map"], out["probs"][..., [CLASS_NAMES.index(c) for c in EVIDENCE_CLASSES]]
    return _segment_means(maps, segments), _segment_means(probs, segments)


def _segment_means(per_frame: torch.Tensor, segments: int) -> np.ndarray:
    """``(segments, ...)``: the mean of each segment's frames (at least one frame each)."""
    edges = np.linspace(0, len(per_frame), segments + 1).round().astype(int)
    return torch.stack([per_frame[a:max(b, a + 1)].mean(0) for a, b in pairwise(edges)]).numpy()


def heard_segments(encoder: SoundEncoder, mono: np.ndarray, segments: int = 10) -> np.ndarray:
    """``(segments, 8)``: the sound encoder's probability that each of :data:`EVIDENCE_CLASSES` sounds in each
    segment of a mono 16-kHz waveform."""
    from xmodal.data.synth.sound_encoder import SOUND_CLASSES, encode_segments

    probs = encode_segments(encoder, mono, segments)["probs"]
    return probs[:, [SOUND_CLASSES.index(c) for c in EVIDENCE_CLASSES]].numpy()


def load_encoders() -> Encoders:
    """The sound and sprite encoders from the default cache (each trained there on first use)."""
    from xmodal.data.synth.sound_encoder import load_sound_encoder
    from xmodal.data.synth.sprite_encoder import load_sprite_encoder

    return load_sound_encoder(), load_sprite_encoder()


def extract_clip(path: Path, segments: int = 10, encoders: Encoders | None = None
                 ) -> dict[str, torch.Tensor]:
    """``{"audio", "audio_power", "visual", "acoustic"}`` of one clip, with ``{"audio_classes", "visual_classes"}`` when
    ``encoders`` (sound, sprite) are given: the sprite encoder's maps are then the visual stream, else the
    pixel cells are."""
    from xmodal.data.acoustic import segment_acoustic_features
    from xmodal.data.io import read_video, resample

    clip = read_video(path, with_audio=True)
    if clip.audio is None:
        raise DataError("the clip has no audio track", path)
    audio = np.atleast_2d(clip.audio)
    if audio.shape[0] == 1:
        audio = np.concatenate([audio, audio])
    elif audio.shape[0] != 2:
        raise DataError(f"expected a mono or stereo audio track, got {audio.shape[0]} channels", path)
    if len(clip.frames) == 0:
        raise DataError("the clip has no video frames", path)
    assert clip.sample_rate is not None  # read_video sets it with the audio
    stereo = np.stack([resample(ch, int(clip.sample_rate), SAMPLE_RATE) for ch in audio]).astype(np.float32)
    mid = stereo.mean(axis=0)
    audio_feature, power = audio_segments(stereo, segments)
    out = {"audio": torch.from_numpy(audio_feature), "audio_power": torch.from_numpy(power),
           "acoustic": torch.from_numpy(segment_acoustic_features(mid, SAMPLE_RATE, segments))}
    if encoders is None:
        return {**out, "visual": torch.from_numpy(visual_segments(clip.frames, segments))}
    sound, sprite = encoders
    maps, seen = encoder_segments(sprite, clip.frames, segments)
    return {**out, "visual": torch.from_numpy(maps), "visual_classes": torch.from_numpy(seen),
            "audio_classes": torch.from_numpy(heard_segments(sound, mid, segments))}


def clip_features(paths: Sequence[Path], cache_dir: str | None = None,
                  visual: Literal["pixels", "sprite_encoder"] = "pixels") -> list[dict[str, torch.Tensor]]:
    """The features of every clip, from the cache when the file's bytes (and, for ``sprite_encoder``, the
    encoders' weights) were seen before. The encoders are loaded only when a clip is not in the cache."""
    from xmodal.transforms.cache import TransformCache, file_digest, make_key

    cache = TransformCache(cache_dir)
    params: dict = {**PARAMS, "visual": visual}
    encoders: list[Encoders] = []
    if visual == "sprite_encoder":
        from xmodal.tasks.av_segments import encoders_key

        params["encoders"] = encoders_key()

    def compute(path: Path) -> dict[str, torch.Tensor]:
        if visual == "sprite_encoder" and not encoders:
            encoders.append(load_encoders())
        return extract_clip(path, SEGMENTS, encoders[0] if encoders else None)

    out = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError("clip not found", path)
        key = make_key(file_digest(path), "avqa_segment_features", params)
        out.append(cache.get_or_compute(key, partial(compute, Path(path))))
    return out
