"""The sound encoder: its log-mel equals librosa's, training is deterministic from its recipe, the weights are
cached by content, and it names the source of held-out sounds (held-out melodies, sentences, voices and
variation ranges, never drawn in training) far above chance."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.data.synth import sound_encoder as so

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = replace(so.SoundRecipe(), steps=2, batch_size=4, versions_per_source=1)


@pytest.mark.slow  # importing librosa (numba) dominates
def test_log_mel_matches_librosa() -> None:
    import librosa

    from xmodal.data.io.audio import read_audio

    wave = read_audio("/usr/share/sounds/alsa/Front_Center.wav", so.SAMPLE_RATE)[0][: 2 * so.SAMPLE_RATE]
    ref = np.log(librosa.feature.melspectrogram(y=wave, sr=so.SAMPLE_RATE, n_fft=so.N_FFT, hop_length=so.HOP,
                                                n_mels=so.N_MELS) + 1e-6)
    ours = so.log_mel(torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None])[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-3)  # float32 STFT against librosa's float64 sums
    patches = so.log_mel_patches(wave, 4)
    assert patches.shape == (4, so.N_MELS, ref.shape[1] // 4)


@pytest.mark.slow  # two short trainings over the sources (about 10 s on an idle core)
def test_training_is_deterministic_and_cached(tmp_path: Path, monkeypatch) -> None:
    a = so.train_sound_encoder(TINY).state_dict()
    first = so.load_sound_encoder(str(tmp_path), TINY)
    assert all(torch.equal(a[k], v) for k, v in first.state_dict().items())
    monkeypatch.setattr(so, "train_sound_encoder", lambda recipe: pytest.fail("trained again"))
    second = so.load_sound_encoder(str(tmp_path), TINY)
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))
    assert so.weights_key(TINY) != so.weights_key(replace(TINY, seed=1))
    out = so.encode_segments(second, np.zeros(10 * so.SAMPLE_RATE, np.float32), 10)
    assert out["embedding"].shape == (10, so.EMBEDDING) and out["probs"].shape == (10, len(so.SOUND_CLASSES))


@pytest.mark.slow  # the default encoder: trained once per machine on first use (69 s measured), then cached
def test_names_heldout_sounds_far_above_chance() -> None:
    model = so.load_sound_encoder()
    rng = np.random.default_rng(5)
    bank = so.sound_bank(rng, replace(so.SoundRecipe(), versions_per_source=2), "heldout")
    waves, labels = so.mixtures(rng, bank, 200, 1)
    one = labels.sum(1) == 1
    with torch.no_grad():
        logits = model(so.log_mel(torch.from_numpy(waves[one])))["logits"]
    accuracy = float((logits.argmax(1).numpy() == labels[one].argmax(1)).mean())
    # one held-out source of 23 classes (chance 4.3 %)
    assert accuracy > 0.45, accuracy
