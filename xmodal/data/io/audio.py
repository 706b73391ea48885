"""Audio with soundfile: float32 signals, mono mixdown, polyphase resampling (scipy.signal.resample_poly)."""

from __future__ import annotations

from math import gcd

import numpy as np

from xmodal.data.io._common import PathLike, decoding, existing
from xmodal.errors import EmptyInputError, SampleRateError


def resample(signal: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with a polyphase filter (Kaiser window, scipy's default)."""
    if orig_sr == target_sr:
        return signal
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(signal, int(target_sr) // g, int(orig_sr) // g, axis=-1).astype(np.float32)


def read_audio(path: PathLike, sample_rate: int | None = None, *, mono: bool = True,
               expected_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file (WAV, FLAC, Ogg/Vorbis/Opus, MP3) to float32 in [-1, 1].

    Returns ``(signal, rate)``: ``signal`` is ``(time,)`` when ``mono`` (channels averaged), else
    ``(channels, time)``. ``sample_rate`` resamples to that rate. ``expected_sample_rate`` forbids resampling:
    a file at any other rate raises :class:`SampleRateError` naming the file.
    """
    import soundfile as sf

    p = existing(path)
    with decoding(p, "audio"):
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)  # (time, channels)
    if expected_sample_rate is not None and sr != expected_sample_rate:
        raise SampleRateError(f"sample rate is {sr} Hz, expected {expected_sample_rate} Hz "
                              "(resample the file or pass sample_rate= to resample on read)", source=p)
    if data.shape[0] == 0:
        raise EmptyInputError("audio file holds no samples", source=p)
    signal = data.T  # (channels, time)
    if mono:
        signal = signal.mean(axis=0)
    if sample_rate is not None and sample_rate != sr:
        signal, sr = resample(signal, sr, sample_rate), sample_rate
    return np.ascontiguousarray(signal, dtype=np.float32), int(sr)


def write_audio(path: PathLike, signal: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write ``(time,)`` or ``(channels, time)`` float audio; the format follows the suffix (.wav, .flac, .ogg)."""
    import soundfile as sf

    arr = np.asarray(signal, dtype=np.float32)
    sf.write(str(path), arr.T if arr.ndim == 2 else arr, int(sample_rate), subtype=subtype)


def audio_duration(path: PathLike) -> float:
    """Duration in seconds read from the header only (cheap)."""
    import soundfile as sf

    p = existing(path)
    with decoding(p, "audio header"):
        info = sf.info(str(p))
    return float(info.frames) / float(info.samplerate)
