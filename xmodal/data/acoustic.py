"""Per-segment acoustic descriptors of ambient sound: pitch, spectral shape, energy and onsets.

The audio-visual methods the survey covers (Sec. 6.2) treat ambient sound as a whole embedding (VGGish); these
descriptors give a model the sound's pitch, spectral shape and onsets explicitly, one row per segment (AVE and
AVVP use 10 one-second segments). Computed with librosa (the ``audio`` extra), whose feature definitions are
the field's reference:

====  ==========================================================================================
0     log RMS energy of the segment (``log(sqrt(mean(y ** 2)) + 1e-8)``)
1     fundamental frequency, ``log2(f0 / 55 Hz)`` of the median YIN estimate (50-2000 Hz)
2-4   spectral centroid, bandwidth and 85 % roll-off, as fractions of the Nyquist frequency
5     spectral flatness (0 tonal .. 1 noise-like)
6     zero-crossing rate
7     onsets per second (librosa's onset detector on the whole clip, counted per segment)
8     mean onset strength
====  ==========================================================================================
"""

from __future__ import annotations

import numpy as np

from xmodal.errors import DataError, require_module

__all__ = ["ACOUSTIC_FEATURES", "segment_acoustic_features"]

ACOUSTIC_FEATURES = ("log_rms", "log2_f0_over_55hz", "centroid", "bandwidth", "rolloff", "flatness", "zcr",
                     "onset_rate", "onset_strength")
_HOP = 512


def segment_acoustic_features(signal: np.ndarray, sample_rate: int, n_segments: int = 10) -> np.ndarray:
    """``(n_segments, 9)`` float32 descriptors of a mono signal cut into ``n_segments`` equal segments."""
    librosa = require_module("librosa", extra="audio")
    y = np.asarray(signal, dtype=np.float32)
    if y.ndim != 1 or y.size < n_segments * 2 * _HOP:
        raise DataError(f"expected a mono signal of at least {n_segments * 2 * _HOP} samples, got shape {y.shape}",
                        "signal")
    if not np.isfinite(y).all():
        raise DataError("signal holds NaN or infinity", "signal")
    nyquist = sample_rate / 2
    onset_env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=_HOP)
    onset_times = librosa.onset.onset_detect(onset_envelope=onset_env, sr=sample_rate, hop_length=_HOP,
                                             units="time")
    seg_len = y.size // n_segments
    seconds = seg_len / sample_rate
    rows = []
    for k in range(n_segments):
        seg = y[k * seg_len:(k + 1) * seg_len]
        spec = np.abs(librosa.stft(seg, n_fft=2048, hop_length=_HOP))
        rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
        if rms < 1e-6:  # silence: no pitch or spectral shape to speak of
            f0 = 0.0
        else:
            f0 = float(np.log2(np.median(librosa.yin(seg, fmin=50, fmax=2000, sr=sample_rate)) / 55.0))
        frames = slice(k * seg_len // _HOP, (k + 1) * seg_len // _HOP)
        start, end = k * seconds, (k + 1) * seconds
        rows.append([
            np.log(rms + 1e-8), f0,
            librosa.feature.spectral_centroid(S=spec, sr=sample_rate).mean() / nyquist,
            librosa.feature.spectral_bandwidth(S=spec, sr=sample_rate).mean() / nyquist,
            librosa.feature.spectral_rolloff(S=spec, sr=sample_rate).mean() / nyquist,
            librosa.feature.spectral_flatness(S=spec).mean(),
            librosa.feature.zero_crossing_rate(seg, hop_length=_HOP).mean(),
            np.sum((onset_times >= start) & (onset_times < end)) / seconds,
            onset_env[frames].mean() if onset_env[frames].size else 0.0,
        ])
    return np.nan_to_num(np.asarray(rows, dtype=np.float32))
