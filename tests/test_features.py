"""Mel spectrogram against librosa on real audio; frame sampling and mel-scale helpers.

Tolerance: ``librosa.feature.melspectrogram`` (0.11) is matched within 1e-5 relative: every bin satisfies
``|ours - ref| <= 1e-5 * |ref| + 1e-5 * peak`` in float32 (the float32 FFTs of either side differ by rounding
far below the peak), within 1e-5 relative bin by bin for every bin within 40 dB of the peak, and in float64
within 1e-5 relative on every bin.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.data.features import (MelSpectrogram, hz_to_mel, mel_filterbank, mel_to_hz, power_to_db,
                                  uniform_frame_indices)
from xmodal.data.io import read_audio

librosa = pytest.importorskip("librosa")

ALSA = Path("/usr/share/sounds/alsa/Front_Center.wav")
OGA = Path("/usr/share/sounds/freedesktop/stereo/bell.oga")


@pytest.fixture(scope="module")
def espeak_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("espeak") / "horse.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "A man is riding a horse on the beach."],
                   check=True, capture_output=True)
    return path


def _clips(espeak_clip: Path) -> list[Path]:
    clips = [p for p in (ALSA, OGA) if p.exists()]
    return clips + [espeak_clip]


CONFIGS = [
    {},  # librosa's defaults: n_fft 2048, hop 512, 128 Slaney mels with Slaney norm
    {"n_fft": 512, "hop_length": 160, "n_mels": 64},
    {"n_fft": 1024, "win_length": 800, "hop_length": 200, "n_mels": 40, "fmin": 30.0, "fmax": 8000.0,
     "htk": True, "norm": None},
]


@pytest.mark.parametrize("config", CONFIGS, ids=["defaults", "speech64", "htk-nonorm"])
def test_filterbank_matches_librosa(config: dict) -> None:
    kw = {"n_fft": 2048, "n_mels": 128, **{k: v for k, v in config.items() if k not in ("hop_length", "win_length")}}
    ours = mel_filterbank(22050, **kw)
    ref = librosa.filters.mel(sr=22050, **kw)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7 * ref.max())


def test_mel_scale_matches_librosa() -> None:
    f = np.array([0.0, 200.0, 999.0, 1000.0, 1001.0, 4000.0, 11025.0])
    for htk in (False, True):
        np.testing.assert_allclose(hz_to_mel(f, htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk), htk), f, rtol=1e-12, atol=1e-9)


@pytest.mark.slow  # the first librosa.feature call JIT-compiles with numba (about 15 s on 2 cores, then cached)
@pytest.mark.parametrize("config", CONFIGS, ids=["defaults", "speech64", "htk-nonorm"])
def test_melspectrogram_matches_librosa_on_real_audio(config: dict, espeak_clip: Path) -> None:
    for path in _clips(espeak_clip):
        x, sr = read_audio(path)
        ours = MelSpectrogram(sr, **config)(torch.from_numpy(x)).numpy()
        ref = librosa.feature.melspectrogram(y=x, sr=sr, **config)
        assert ours.shape == ref.shape, path
        peak = float(ref.max())
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * peak, err_msg=str(path))
        loud = ref > 1e-4 * peak  # within 40 dB of the peak: bin-by-bin relative error
        assert (np.abs(ours - ref)[loud] / ref[loud]).max() < 1e-5, path
        # in float64 every bin agrees to 1e-5 relative
        ours64 = MelSpectrogram(sr, **config)(torch.from_numpy(x.astype(np.float64))).numpy()
        ref64 = librosa.feature.melspectrogram(y=x.astype(np.float64), sr=sr, **config)
        np.testing.assert_allclose(ours64, ref64, rtol=1e-5, atol=1e-30, err_msg=str(path))
        # log-mel as librosa.power_to_db (ref 1, amin 1e-10, top_db 80), to 1e-3 dB
        db = power_to_db(torch.from_numpy(ours64)).numpy()
        np.testing.assert_allclose(db, librosa.power_to_db(ref64), atol=1e-3)


def test_batch_equals_per_clip() -> None:
    if not ALSA.exists():
        pytest.skip("alsa-utils sounds not installed")
    x, sr = read_audio(ALSA)
    mel = MelSpectrogram(sr, n_fft=1024, hop_length=480, n_mels=64, log=True)
    batch = torch.stack([torch.from_numpy(x), torch.from_numpy(x[::-1].copy())])  # (2, time)
    out = mel(batch)  # (2, 64, frames)
    assert out.shape[:2] == (2, 64)
    torch.testing.assert_close(out[0], mel(torch.from_numpy(x)))
    torch.testing.assert_close(out[1], mel(torch.from_numpy(x[::-1].copy())))
    assert mel.state_dict() == {}  # filterbank and window are rebuilt, not checkpointed


def test_uniform_frame_indices() -> None:
    np.testing.assert_array_equal(uniform_frame_indices(10, 5), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(uniform_frame_indices(3, 6), [0, 0, 1, 1, 2, 2])
    idx = uniform_frame_indices(250, 8)
    assert idx.min() >= 0 and idx.max() < 250 and np.all(np.diff(idx) > 0)
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 4)
