"""Features computed in torch: mel spectrogram (equal to librosa's), log-mel, piano roll, frame sampling.

The mel filterbank is written here from the Slaney/HTK formulas (no librosa at run time); tests compare it
with ``librosa.filters.mel`` and ``librosa.feature.melspectrogram`` on real audio.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# Slaney's Auditory Toolbox mel scale: linear below 1 kHz (3 mel per 200 Hz), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Hz -> mel, Slaney (default, as librosa) or HTK (2595 log10(1 + f/700))."""
    f = np.asarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    mels = f / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, mels)


def mel_to_hz(mels: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """mel -> Hz, inverse of :func:`hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, _F_SP * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0,
                   fmax: float | None = None, htk: bool = False, norm: str | None = "slaney") -> np.ndarray:
    """Triangular mel filters, float32 ``(n_mels, 1 + n_fft // 2)``, as ``librosa.filters.mel`` builds them:
    ``n_mels + 2`` edges evenly spaced in mel, triangles on the FFT bin frequencies, and with
    ``norm="slaney"`` each triangle scaled by ``2 / (upper_hz - lower_hz)`` (constant energy per band)."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (bins,)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]  # (n_mels + 2, bins)
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    elif norm is not None:
        raise ValueError(f"mel_filterbank: norm must be 'slaney' or None, got {norm!r}")
    return weights.astype(np.float32)


class MelSpectrogram(nn.Module):
    """Mel power spectrogram on ``torch.stft``: ``(..., time)`` -> ``(..., n_mels, frames)``.

    Defaults follow ``librosa.feature.melspectrogram`` 0.11: periodic Hann window, ``center=True`` with zero
    padding (``pad_mode="constant"``), power 2, Slaney mel scale and norm, ``hop_length=512``.
    ``log=True`` returns :func:`power_to_db` of it (librosa's ``power_to_db``, ref 1, amin 1e-10, top_db 80).
    """

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop_length: int = 512,
                 win_length: int | None = None, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                 power: float = 2.0, center: bool = True, pad_mode: str = "constant", htk: bool = False,
                 norm: str | None = "slaney", log: bool = False, top_db: float | None = 80.0) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.power, self.center, self.pad_mode = sample_rate, n_fft, power, center, pad_mode
        self.win_length = win_length or n_fft
        self.hop_length = hop_length
        self.log, self.top_db = log, top_db
        fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk, norm)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)  # (n_mels, bins)
        # float64 so that float64 input gets a float64 window (a float32 one costs 4e-4 relative error)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True, dtype=torch.float64),
                             persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        shape = waveform.shape
        x = waveform.reshape(-1, shape[-1])  # (batch, time)
        spec = torch.stft(x, self.n_fft, self.hop_length, self.win_length, window=self.window.to(x.dtype),  # type: ignore[arg-type]
                          center=self.center, pad_mode=self.pad_mode, return_complex=True)  # (batch, bins, frames)
        mag = spec.abs()
        power = mag.square() if self.power == 2.0 else mag.pow(self.power)
        mel = torch.matmul(self.mel_fb.to(power.dtype), power)  # type: ignore[arg-type]  # (batch, n_mels, frames)
        if self.log:
            mel = power_to_db(mel, top_db=self.top_db)
        return mel.reshape(*shape[:-1], *mel.shape[-2:])


def power_to_db(spec: torch.Tensor, ref: float = 1.0, amin: float = 1e-10,
                top_db: float | None = 80.0) -> torch.Tensor:
    """``10 log10(max(amin, S) / ref)``, floored at ``max - top_db`` per example (last two axes), as
    ``librosa.power_to_db`` does for one clip."""
    db = 10.0 * torch.log10(spec.clamp_min(amin)) - 10.0 * math.log10(max(amin, ref))
    if top_db is not None:
        peak = db.amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - top_db)
    return db


def piano_roll(notes: np.ndarray, fs: float = 100.0, n_frames: int | None = None,
               binary: bool = False) -> np.ndarray:
    """float32 ``(128, frames)`` roll from ``(N, 5)`` notes (start, end, pitch, velocity, program), the way
    ``pretty_midi.Instrument.get_piano_roll`` fills it without pedal or pitch bends: velocities summed over
    ``[int(start * fs), int(end * fs))``. Drums (program 128) are skipped, as pretty_midi does by default."""
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 5)
    notes = notes[notes[:, 4] != 128]
    length = int(notes[:, 1].max() * fs) if len(notes) and n_frames is None else (n_frames or 0)
    roll = np.zeros((128, length), dtype=np.float32)
    for start, end, pitch, vel, _ in notes:
        roll[int(pitch), int(start * fs):int(end * fs)] += vel
    return (roll > 0).astype(np.float32) if binary else roll


def uniform_frame_indices(total: int, num: int) -> np.ndarray:
    """``num`` frame indices spread over ``total`` frames: the centre of each of ``num`` equal segments
    (TSN-style test-time sampling). Indices repeat when ``num > total``."""
    if total <= 0 or num <= 0:
        raise ValueError(f"uniform_frame_indices: need total > 0 and num > 0, got total={total}, num={num}")
    return np.floor((np.arange(num) + 0.5) * total / num).astype(np.int64)
