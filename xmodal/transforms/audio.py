"""Audio: decode, mix to mono, resample -> waveform (1, time); or log-mel spectrogram (n_mels, frames)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.transforms.base import Transform, register_transform


def _waveform(value: Any, sample_rate: int, max_seconds: float | None) -> np.ndarray:
    """(time,) float32 mono at ``sample_rate``; an inline array is taken to be at that rate already."""
    from xmodal.data.io import read_audio

    if isinstance(value, (str, Path)):
        wav, _ = read_audio(value, sample_rate)
    else:
        wav = np.asarray(value, dtype=np.float32)
        wav = wav.mean(axis=0) if wav.ndim == 2 else wav
    if max_seconds is not None:
        wav = wav[: round(max_seconds * sample_rate)]
    return np.ascontiguousarray(wav, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _mel_module(sample_rate: int, options_json: str) -> torch.nn.Module:
    """One log-mel module per (rate, options): building the filterbank per file would dominate the cost."""
    from xmodal.data.features import MelSpectrogram

    return MelSpectrogram(sample_rate, log=True, **json.loads(options_json))


@register_transform("waveform", modalities=("waveform",))
class WaveformTransform(Transform):
    """Path or array -> float32 ``(1, time)`` mono at ``sample_rate`` (polyphase resampling), at most
    ``max_seconds`` long."""

    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 16000, "max_seconds": None}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        wav = _waveform(value, self.params["sample_rate"], self.params["max_seconds"])
        return torch.from_numpy(wav).unsqueeze(0)


@register_transform("log_mel", modalities=("spectrogram",))
class LogMelTransform(Transform):
    """Path or array -> float32 ``(n_mels, frames)`` log-mel in dB (librosa's melspectrogram + power_to_db
    with these parameters); an .npz/.npy already holding a spectrogram is returned as stored."""

    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 16000, "n_fft": 1024, "hop_length": 256, "n_mels": 64, "fmin": 0.0,
                "fmax": None, "top_db": 80.0, "max_seconds": None}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        if isinstance(value, (str, Path)) and Path(value).suffix.lower() in (".npz", ".npy"):
            from xmodal.transforms.motion import read_npz_array  # a stored spectrogram is used as it is

            return torch.from_numpy(read_npz_array(value, ("mel", "logmel", "log_mel", "spectrogram", "spec"))
                                    .astype(np.float32))
        p = self.params
        wav = _waveform(value, p["sample_rate"], p["max_seconds"])
        options = {k: p[k] for k in ("n_fft", "hop_length", "n_mels", "fmin", "fmax", "top_db")}
        mel = _mel_module(p["sample_rate"], json.dumps(options, sort_keys=True))
        with torch.no_grad():
            return mel(torch.from_numpy(wav)).float()
