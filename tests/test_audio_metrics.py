"""Audio metrics against their references on real recordings, degraded in known ways.

References and tolerances:
- STOI/ESTOI vs pystoi 0.4.1: absolute 1e-6 (the project's bar; observed about 1e-9 on stationary bands, 1e-15 on speech).
- pystoi's resampler: absolute 1e-12.
- SNR, SI-SNR, SI-SDR vs torchmetrics 1.9: absolute 1e-9 in float64, relative 1e-5 in float32.
- PESQ vs the ``pesq`` package (same ITU C code): absolute 1e-9, serial and parallel alike.
Recordings: Debian alsa-utils voice clips (48 kHz), sound-theme-freedesktop .oga sounds (8 to 96 kHz, voice
and non-voice) and espeak-ng speech (22.05 kHz).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfiltfilt

pystoi = pytest.importorskip("pystoi")
pesq_ref = pytest.importorskip("pesq")
torch = pytest.importorskip("torch")


def _load_torchmetrics_audio():
    """torchmetrics' SNR/SDR functions. ``import torchmetrics`` runs its package __init__, which imports
    torch-fidelity whenever that is installed, and torch-fidelity needs torchvision, which cannot be installed
    beside this torch. The audio functions need neither, so when the plain import fails they are loaded with
    the package __init__ files bypassed, and sys.modules is restored afterwards."""
    import importlib
    import importlib.util
    import sys
    import types

    try:
        return importlib.import_module("torchmetrics.functional.audio")
    except ImportError:
        pass
    spec = importlib.util.find_spec("torchmetrics")
    if spec is None:
        pytest.skip("torchmetrics is not installed")
    before = set(sys.modules)
    try:
        root = spec.submodule_search_locations[0]
        for name, sub in (
            ("torchmetrics", ""),
            ("torchmetrics.functional", "/functional"),
            ("torchmetrics.functional.audio", "/functional/audio"),
        ):
            pkg = types.ModuleType(name)
            pkg.__path__ = [root + sub]
            sys.modules[name] = pkg
        snr_mod = importlib.import_module("torchmetrics.functional.audio.snr")
        sdr_mod = importlib.import_module("torchmetrics.functional.audio.sdr")
        return types.SimpleNamespace(
            signal_noise_ratio=snr_mod.signal_noise_ratio,
            scale_invariant_signal_noise_ratio=snr_mod.scale_invariant_signal_noise_ratio,
            scale_invariant_signal_distortion_ratio=sdr_mod.scale_invariant_signal_distortion_ratio,
        )
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]


tm_audio = _load_torchmetrics_audio()

from xmodal.errors import EmptyInputError, NonFiniteError, SampleRateError, ShapeError  # noqa: E402
from xmodal.metrics.audio import estoi, pesq, pesq_batch, si_sdr, si_snr, snr, stoi  # noqa: E402
from xmodal.metrics.audio._resample import resample_to  # noqa: E402
from xmodal.metrics.audio.pesq_itu import PesqFailure  # noqa: E402

ALSA = Path("/usr/share/sounds/alsa")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
STOI_ATOL = 1e-6


def _mono(path: Path) -> tuple[np.ndarray, int]:
    if not path.exists():
        pytest.skip(
            f"{path} is missing: install the Debian package that ships it (alsa-utils, "
            "sound-theme-freedesktop)"
        )
    x, fs = sf.read(str(path), dtype="float64", always_2d=True)
    return x.mean(axis=1), fs


def degrade(x: np.ndarray, fs: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Known degradations of a clean signal, all of its length."""
    rng = np.random.default_rng(seed)
    power = np.mean(x**2)
    out = {}
    for snr_db in (-5, 0, 10, 20):
        noise = rng.standard_normal(x.size)
        out[f"noise{snr_db}dB"] = x + noise * np.sqrt(power / 10 ** (snr_db / 10) / np.mean(noise**2))
    out["lowpass1k"] = sosfiltfilt(butter(6, 1000, fs=fs, output="sos"), x)
    peak = np.max(np.abs(x))
    out["clip30%"] = np.clip(x, -0.3 * peak, 0.3 * peak)
    delay = int(0.005 * fs)  # 5 ms, short of a 30-frame segment so no segment is all zeros
    out["delay5ms"] = np.concatenate([np.zeros(delay), x[:-delay]])
    return out


def _espeak(tmp_path: Path, text: str, name: str) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (Debian package espeak-ng)")
    wav = tmp_path / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    x, fs = sf.read(str(wav), dtype="float64")
    return x, fs


def _assert_stoi_matches(clean: np.ndarray, degraded: dict[str, np.ndarray], fs: int) -> None:
    batch_clean = np.stack([clean] * len(degraded))
    batch_deg = np.stack(list(degraded.values()))
    for extended in (False, True):
        ours = stoi(batch_clean, batch_deg, fs, extended=extended)
        ref = np.array([pystoi.stoi(clean, d, fs, extended=extended) for d in degraded.values()])
        np.testing.assert_allclose(ours, ref, rtol=0, atol=STOI_ATOL, err_msg=f"fs={fs} extended={extended}")


@pytest.mark.parametrize("name", ["Front_Center", "Rear_Left", "Side_Right"])
def test_stoi_alsa_voice_48k(name):
    x, fs = _mono(ALSA / f"{name}.wav")
    _assert_stoi_matches(x, degrade(x, fs), fs)


@pytest.mark.parametrize("rate", [16000, 10000, 8000, 96000])
def test_stoi_alsa_voice_resampled(rate):
    x, fs = _mono(ALSA / "Front_Left.wav")
    x = resample_poly(x, rate, fs)
    _assert_stoi_matches(x, degrade(x, rate, seed=1), rate)


@pytest.mark.parametrize(
    "name",
    [
        "phone-incoming-call",
        "phone-outgoing-busy",
        "service-login",
        "audio-channel-rear-center",
        "alarm-clock-elapsed",
    ],
)
def test_stoi_freedesktop_sounds(name):
    """44.1, 8, 22.05, 48 kHz (96 kHz above): both the polyphase-FFT and the scipy resampling paths."""
    x, fs = _mono(FREEDESKTOP / f"{name}.oga")
    x = x[: 3 * fs]  # the alarm clock rings for 6 s; 3 s is plenty
    _assert_stoi_matches(x, degrade(x, fs, seed=2), fs)


def test_stoi_espeak_speech(tmp_path):
    x, fs = _espeak(tmp_path, "The quick brown fox jumps over the lazy dog near the river bank.", "fox")
    _assert_stoi_matches(x, degrade(x, fs, seed=3), fs)


def test_stoi_decreases_with_noise():
    x, fs = _mono(ALSA / "Front_Center.wav")
    d = degrade(x, fs)
    scores = [stoi(x, d[f"noise{s}dB"], fs) for s in (20, 10, 0, -5)]
    assert scores == sorted(scores, reverse=True)


def test_stoi_single_batch_and_torch_agree():
    x, fs = _mono(ALSA / "Rear_Right.wav")
    y = degrade(x, fs)["noise0dB"]
    single = stoi(x, y, fs)
    assert isinstance(single, float)
    batch = stoi(np.stack([x, x]), np.stack([y, x]), fs)
    assert batch.shape == (2,) and batch[0] == pytest.approx(single, abs=1e-12)
    assert batch[1] == pytest.approx(1.0, abs=1e-9)  # a signal against itself
    t = estoi(torch.from_numpy(x), torch.from_numpy(y), fs)
    assert isinstance(t, torch.Tensor) and t.ndim == 0
    assert float(t) == pytest.approx(pystoi.stoi(x, y, fs, extended=True), abs=STOI_ATOL)
    f32 = stoi(x.astype(np.float32), y.astype(np.float32), fs)
    assert f32 == pytest.approx(pystoi.stoi(x.astype(np.float32), y.astype(np.float32), fs), abs=STOI_ATOL)


def test_stoi_too_short_returns_reference_value():
    """Fewer than 30 frames after silence removal: pystoi warns and returns 1e-5; so do we."""
    x, fs = _mono(FREEDESKTOP / "bell.oga")  # 0.14 s
    y = degrade(x, fs)["noise10dB"]
    with pytest.warns(RuntimeWarning):
        ref = pystoi.stoi(x, y, fs)
    with pytest.warns(RuntimeWarning, match="30"):
        ours = stoi(x, y, fs)
    assert ours == ref == 1e-5
    # In a batch, only the short item gets 1e-5 (padding with zeros keeps frames silent, hence dropped).
    long_x, _ = _mono(ALSA / "Front_Center.wav")
    long_x = resample_poly(long_x, fs, 48000)
    n = long_x.size
    pad = np.zeros(n)
    pad[: x.size] = x
    with pytest.warns(RuntimeWarning, match=r"\[1\]"):
        both = stoi(np.stack([long_x, pad]), np.stack([long_x, pad]), fs)
    assert both[1] == 1e-5 and both[0] == pytest.approx(1.0, abs=1e-9)


def test_stoi_errors():
    x, fs = _mono(ALSA / "Front_Center.wav")
    with pytest.raises(ShapeError, match="shape"):
        stoi(x, x[:-1], fs)
    with pytest.raises(SampleRateError):
        stoi(x, x, 0)
    with pytest.raises(SampleRateError):
        stoi(x, x, 22050.5)
    bad = x.copy()
    bad[10] = np.nan
    with pytest.raises(NonFiniteError, match="degraded"):
        stoi(x, bad, fs)
    with pytest.raises(EmptyInputError, match=r"clean\[1\].*silence"):
        stoi(np.stack([x, np.zeros_like(x)]), np.stack([x, x]), fs)
    # A silent degraded signal is a (very bad) output, not an error: it scores as pystoi scores it.
    assert stoi(x, np.zeros_like(x), fs) == pytest.approx(pystoi.stoi(x, np.zeros_like(x), fs), abs=STOI_ATOL)
    with pytest.raises(ShapeError, match=r"\(B, T\)"):
        stoi(x.reshape(1, 1, -1), x.reshape(1, 1, -1), fs)


@pytest.mark.parametrize("fs_in", [8000, 16000, 22050, 44100, 48000, 96000])
def test_resampler_equals_pystoi(fs_in):
    x, fs = _mono(ALSA / "Front_Center.wav")
    x = resample_poly(x, fs_in, fs)[:fs_in]  # about 1 s of real speech at fs_in
    ours = resample_to(np.stack([x, x[::-1]]), 10000, fs_in)
    for row, sig in zip(ours, (x, x[::-1])):
        np.testing.assert_allclose(row, pystoi.utils.resample_oct(sig, 10000, fs_in), rtol=0, atol=1e-12)


# ---- SNR family vs torchmetrics ----------------------------------------------------------------------------


def _snr_batch() -> tuple[np.ndarray, np.ndarray]:
    clips = [_mono(ALSA / f"{n}.wav")[0] for n in ("Front_Center", "Front_Left", "Rear_Left")]
    n = min(c.size for c in clips)
    target = np.stack([c[:n] for c in clips])
    preds = np.stack([degrade(c[:n], 48000, seed=i)["noise10dB"] * (0.5 + i) for i, c in enumerate(clips)])
    return preds, target


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_snr_family_matches_torchmetrics(dtype):
    preds, target = (a.astype(dtype) for a in _snr_batch())
    p, t = torch.from_numpy(preds), torch.from_numpy(target)
    refs = {
        snr: tm_audio.signal_noise_ratio(p, t),
        si_snr: tm_audio.scale_invariant_signal_noise_ratio(p, t),
        si_sdr: tm_audio.scale_invariant_signal_distortion_ratio(p, t),
    }
    tol = dict(rtol=0, atol=1e-9) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-5)
    for fn, ref in refs.items():
        ours_np = fn(preds, target)
        assert isinstance(ours_np, np.ndarray) and ours_np.shape == (3,)
        np.testing.assert_allclose(ours_np, ref.numpy(), **tol)
        ours_t = fn(p, t)
        assert isinstance(ours_t, torch.Tensor)
        torch.testing.assert_close(ours_t, ref, **tol)
    zero_mean = tm_audio.signal_noise_ratio(p, t, zero_mean=True)
    np.testing.assert_allclose(snr(preds, target, zero_mean=True), zero_mean.numpy(), **tol)
    # Leading dims are batch dims; one signal gives a float.
    stacked = si_sdr(np.stack([preds, target]), np.stack([target, target]))
    assert stacked.shape == (2, 3)
    assert isinstance(si_snr(preds[0], target[0]), float)


def test_snr_family_known_values_and_errors():
    x, _ = _mono(ALSA / "Side_Left.wav")
    # SI-SDR ignores gain; SNR does not. 20 dB of added white noise reads as about 20 dB.
    assert si_sdr(3 * x, x) > 100
    noisy = degrade(x, 48000)["noise20dB"]
    assert snr(noisy, x) == pytest.approx(20.0, abs=0.01)
    with pytest.raises(ShapeError):
        si_snr(x[:-5], x)


# ---- PESQ vs the ITU code ----------------------------------------------------------------------------------


def _speech_16k() -> list[np.ndarray]:
    return [
        resample_poly(_mono(ALSA / f"{n}.wav")[0], 1, 3) for n in ("Front_Center", "Rear_Left", "Side_Right")
    ]


@pytest.mark.slow
def test_pesq_matches_reference_serial_and_parallel():
    clean = _speech_16k()
    pairs = [
        (c, d)
        for i, c in enumerate(clean)
        for k, d in degrade(c, 16000, seed=i).items()
        if k in ("noise0dB", "noise20dB", "lowpass1k", "clip30%")
    ]
    refs = [c for c, _ in pairs]
    degs = [d for _, d in pairs]
    for mode in ("wb", "nb"):
        expected = np.array([pesq_ref.pesq(16000, r, d, mode) for r, d in pairs])
        serial = pesq_batch(refs, degs, 16000, mode, n_workers=1)
        parallel = pesq_batch(refs, degs, 16000, mode, n_workers=2)
        np.testing.assert_allclose(serial, expected, rtol=0, atol=1e-9)
        np.testing.assert_allclose(parallel, expected, rtol=0, atol=1e-9)
    x8 = resample_poly(clean[0], 1, 2)
    y8 = degrade(x8, 8000)["noise10dB"]
    assert pesq(x8, y8, 8000, "nb") == pytest.approx(pesq_ref.pesq(8000, x8, y8, "nb"), abs=1e-9)
    # A (B, T) tensor batch returns a tensor; different lengths are allowed for single pairs (P.862 aligns).
    t = pesq(
        torch.from_numpy(np.stack(refs[:2])), torch.from_numpy(np.stack(degs[:2])), 16000, "wb", n_workers=1
    )
    assert isinstance(t, torch.Tensor) and t.shape == (2,)
    assert pesq(clean[0], degs[0][:-800], 16000) == pytest.approx(
        pesq_ref.pesq(16000, clean[0], degs[0][:-800], "wb"), abs=1e-9
    )


def test_pesq_errors():
    x = _speech_16k()[0]
    with pytest.raises(SampleRateError, match="8000, 16000"):
        pesq(x, x, 44100)
    with pytest.raises(SampleRateError, match="wide-band"):
        pesq(x, x, 8000, "wb")
    with pytest.raises(EmptyInputError, match="silence"):
        pesq(x, np.zeros_like(x), 16000)
    with pytest.raises(EmptyInputError, match=r"deg\[1\]"):
        pesq_batch([x, x], [x, np.zeros_like(x)], 16000)
    with pytest.raises(ShapeError):
        pesq_batch([x, x], [x], 16000)
    # A failure inside a worker process comes back typed and names the pair.
    with pytest.raises(PesqFailure, match=r"pair\[1\].*1/4 of a second"):
        pesq_batch([x, x[:2000]], [x, x[:2000]], 16000, n_workers=2)


# ---- CLI ---------------------------------------------------------------------------------------------------


def _write_dirs(tmp_path: Path) -> tuple[Path, Path, dict]:
    ref_dir, gen_dir = tmp_path / "ref", tmp_path / "gen"
    ref_dir.mkdir()
    gen_dir.mkdir()
    pairs = {}
    for i, c in enumerate(_speech_16k()):
        d = degrade(c, 16000, seed=i)["noise10dB"] * 0.5
        sf.write(ref_dir / f"utt{i}.wav", c, 16000, subtype="FLOAT")
        sf.write(gen_dir / f"utt{i}.wav", d, 16000, subtype="FLOAT")
        pairs[f"utt{i}"] = (c.astype(np.float32).astype(np.float64), d.astype(np.float32).astype(np.float64))
    return ref_dir, gen_dir, pairs


@pytest.mark.slow
def test_cli_eval_audio(tmp_path):
    from typer.testing import CliRunner

    from xmodal.cli import app

    ref_dir, gen_dir, pairs = _write_dirs(tmp_path)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "audio",
            "--ref",
            str(ref_dir),
            "--gen",
            str(gen_dir),
            "--metrics",
            "stoi,estoi,pesq,si_snr",
            "--workers",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_files"] == 3
    for name, (c, d) in pairs.items():
        got = out["per_file"][name]
        assert got["stoi"] == pytest.approx(pystoi.stoi(c, d, 16000), abs=STOI_ATOL)
        assert got["estoi"] == pytest.approx(pystoi.stoi(c, d, 16000, extended=True), abs=STOI_ATOL)
        assert got["pesq"] == pytest.approx(pesq_ref.pesq(16000, c, d, "wb"), abs=1e-6)
        ref_si = tm_audio.scale_invariant_signal_noise_ratio(torch.from_numpy(d), torch.from_numpy(c))
        assert got["si_snr"] == pytest.approx(float(ref_si), abs=1e-6)
    assert out["mean"]["stoi"] == pytest.approx(np.mean([v["stoi"] for v in out["per_file"].values()]))


def test_cli_eval_audio_unpaired_files(tmp_path):
    from typer.testing import CliRunner

    from xmodal.cli import app
    from xmodal.errors import MetricInputError

    ref_dir, gen_dir, _ = _write_dirs(tmp_path)
    (gen_dir / "utt1.wav").unlink()
    res = CliRunner().invoke(
        app, ["eval", "audio", "--ref", str(ref_dir), "--gen", str(gen_dir), "--metrics", "si_snr"]
    )
    assert isinstance(res.exception, MetricInputError)
    assert "utt1" in str(res.exception)


def _stationary_cases() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Clean/degraded pairs whose clean signal is stationary over whole 384 ms segments, so that a band's
    envelope is constant there and its centred vector is rounding noise: tones, and speech with a DC tail."""
    fs = 16000
    t = np.arange(2 * fs) / fs
    rng = np.random.default_rng(7)
    tone = np.sin(2 * np.pi * 2500 * t)
    cases = {
        "tone_pair_2500Hz": (tone, 0.5 * np.sin(2 * np.pi * 2500 * t + 0.3) + 0.1 * np.sin(2 * np.pi * 1000 * t), fs),
        "pure_tone_itself": (np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 1000 * t), fs),
        "pure_tone_noisy": (np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size), fs),
    }
    x, fs_voice = _mono(ALSA / "Front_Center.wav")
    with_tail = np.concatenate([x, np.full(fs_voice, 0.3)])  # one second of constant DC after the speech
    cases["speech_dc_tail"] = (with_tail, with_tail + 0.01 * rng.standard_normal(with_tail.size), fs_voice)
    cases["speech_dc_tail_itself"] = (with_tail, with_tail, fs_voice)
    return cases


@pytest.mark.parametrize("extended", [False, True])
def test_stoi_stationary_clean_signal_matches_pystoi(extended):
    """A stationary band must be centred explicitly, as pystoi does: the sum-of-squares shortcut cancels to
    garbage there (it gave 5e7 for the tone pair where pystoi gives 0.124)."""
    for name, (clean, degraded, fs) in _stationary_cases().items():
        ours = stoi(clean, degraded, fs, extended=extended)
        ref = pystoi.stoi(clean, degraded, fs, extended=extended)
        assert ours == pytest.approx(ref, abs=STOI_ATOL), name
        assert -1.0 <= ours <= 1.0 + 1e-9, name


@pytest.mark.parametrize("name", ["trash-empty", "phone-incoming-call", "complete", "service-login"])
@pytest.mark.parametrize("extended", [False, True])
def test_stoi_anti_phase_stereo_mixdown_matches_pystoi(name, extended):
    """A stereo recording whose right channel is polarity-inverted mixes down to the small difference of two
    nearly equal channels: long stretches of the clean signal are then near-stationary residue, where centring by
    sums cancelled to garbage (-31873.6 where pystoi gives about 0.49)."""
    path = FREEDESKTOP / f"{name}.oga"
    if not path.exists():
        pytest.skip(f"{path} is missing: install sound-theme-freedesktop")
    x, fs = sf.read(str(path), dtype="float64", always_2d=True)
    mixdown = (x[:, 0] - x[:, 1]) / 2
    noisy = mixdown + 1e-3 * np.random.default_rng(0).standard_normal(mixdown.size)
    for degraded in (noisy, x[:, 0]):
        ours = stoi(mixdown, degraded, fs, extended=extended)
        assert ours == pytest.approx(pystoi.stoi(mixdown, degraded, fs, extended=extended), abs=STOI_ATOL)
        assert -1.0 <= ours <= 1.0 + 1e-9
