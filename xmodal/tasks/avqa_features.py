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
- ``acoustic`` ``(T, 9)``: :func:`xmodal.data.acoustic.segment_acoustic_features` of the mid channel (pitch,
  spectral shape, onsets).

Features are cached with :class:`xmodal.transforms.cache.TransformCache`, keyed by the file's bytes and
:data:`PARAMS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from xmodal.errors import DataError

SAMPLE_RATE = 16000
GRID, CELL, MELS = 7, 8, 64
PARAMS = {"version": 1, "segments": 10, "sample_rate": SAMPLE_RATE, "n_mels": MELS, "n_fft": 1024, "hop": 256,
          "grid": GRID, "cell": CELL, "stereo": "mid+ild"}
AUDIO_DIM, VISUAL_DIM, ACOUSTIC_DIM = 3 * MELS, 3 * CELL * CELL, 9


def _log_mel(y: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_fft=PARAMS["n_fft"], hop_length=PARAMS["hop"],
                                         n_mels=MELS)
    return np.log(mel + 1e-6).T  # (frames, mels)


def audio_segments(stereo: np.ndarray, segments: int = 10) -> np.ndarray:
    """``(segments, 192)`` from ``(2, samples)`` float audio (see the module docstring)."""
    mid = _log_mel(stereo.mean(axis=0))
    ild = _log_mel(stereo[0]) - _log_mel(stereo[1])
    edges = np.linspace(0, mid.shape[0], segments + 1).round().astype(int)
    return np.stack([np.concatenate([mid[a:b].mean(0), mid[a:b].std(0), ild[a:b].mean(0)])
                     for a, b in pairwise(edges)]).astype(np.float32)


def visual_segments(frames: np.ndarray, segments: int = 10) -> np.ndarray:
    """``(segments, 7, 7, 192)`` from uint8 ``(F, H, W, 3)`` frames."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (F, 3, H, W)
    x = torch.nn.functional.adaptive_avg_pool2d(x, GRID * CELL)  # (F, 3, 56, 56)
    cells = x.reshape(-1, 3, GRID, CELL, GRID, CELL).permute(0, 2, 4, 1, 3, 5).reshape(-1, GRID, GRID, VISUAL_DIM)
    edges = np.linspace(0, cells.shape[0], segments + 1).round().astype(int)
    return torch.stack([cells[a:max(b, a + 1)].mean(0) for a, b in pairwise(edges)]).numpy()


def encoder_segments(encoder: torch.nn.Module, frames: np.ndarray, segments: int = 10) -> np.ndarray:
    """``(segments, 7, 7, 64)``: the sprite encoder's maps of uint8 ``(F, H, W, 3)`` frames, averaged per
    segment."""
    from xmodal.data.synth.sprite_encoder import encode_frames

    maps = encode_frames(encoder, frames)["map"]  # (F, 7, 7, 64)
    edges = np.linspace(0, len(maps), segments + 1).round().astype(int)
    return torch.stack([maps[a:max(b, a + 1)].mean(0) for a, b in pairwise(edges)]).numpy()


def extract_clip(path: Path, segments: int = 10, encoder: torch.nn.Module | None = None
                 ) -> dict[str, torch.Tensor]:
    """``{"audio", "visual", "acoustic"}`` of one clip; ``encoder`` (a sprite encoder) gives the visual maps,
    else the pixel cells."""
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
    stereo = np.stack([resample(ch, int(clip.sample_rate), SAMPLE_RATE) for ch in audio]).astype(np.float32)
    return {"audio": torch.from_numpy(audio_segments(stereo, segments)),
            "visual": torch.from_numpy(visual_segments(clip.frames, segments) if encoder is None
                                       else encoder_segments(encoder, clip.frames, segments)),
            "acoustic": torch.from_numpy(segment_acoustic_features(stereo.mean(axis=0), SAMPLE_RATE, segments))}


def clip_features(paths: Sequence[Path], cache_dir: str | None = None,
                  visual: Literal["pixels", "sprite_encoder"] = "pixels") -> list[dict[str, torch.Tensor]]:
    """The features of every clip, from the cache when the file's bytes (and, for ``sprite_encoder``, the
    encoder's weights key) were seen before. The sprite encoder is trained on first use and cached too."""
    from xmodal.transforms.cache import TransformCache, file_digest, make_key

    cache = TransformCache(cache_dir)
    params: dict = {**PARAMS, "visual": visual}
    encoder = None
    if visual == "sprite_encoder":
        from xmodal.data.synth import sprite_encoder

        params["encoder"] = sprite_encoder.weights_key()
        encoder = sprite_encoder.load_sprite_encoder(cache_dir)
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise DataError("clip not found", path)
        key = make_key(file_digest(path), "avqa_segment_features", params)
        out.append(cache.get_or_compute(key, lambda p=path: extract_clip(Path(p), PARAMS["segments"], encoder)))
    return out
