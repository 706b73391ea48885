"""The scene vocabulary: every class drawn and (unless a prop) sounded from real packaged media, provenance
for the cards, held-out pools disjoint from training, and the pitch shift measured on a real fluidsynth flute
by librosa's YIN (two semitones up: 392 Hz G4 -> 440 Hz A4)."""

from __future__ import annotations

import numpy as np
import pytest

from xmodal.data.synth import scene_render, sources, vocabulary


def test_every_class_has_a_sprite_and_props_only_are_silent():
    for c in vocabulary.CLASSES:
        spr = vocabulary.sprite(c.name, 24, "red", 5.0)
        alpha = spr[:, :, 3] > 0
        # trimmed to the opaque pixels: the sprite's rectangle is the object's box
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        assert c.sounding == (c.kind != "prop")
    assert len(set(vocabulary.SOUNDING)) >= 20


def test_provenance_names_package_file_and_licence_of_every_stream():
    rows = vocabulary.provenance()
    for c in vocabulary.CLASSES:
        streams = {r["stream"] for r in rows if r["class"] == c.name}
        assert streams == ({"sprite", "sound"} if c.sounding else {"sprite"})
    assert all(r["package"] and r["file"] and r["licence"] for r in rows)


def test_held_out_pools_are_disjoint_from_training():
    for pools in (sources.MELODIES, sources.SENTENCES, sources.VOICES):
        assert not set(pools["train"]) & set(pools["heldout"])


@pytest.mark.parametrize("source", ["animal:dog", "object:bell", "instrument:violin", "person:speech"])
def test_sources_are_real_trimmed_and_cached(source):
    wave = sources.load_source(source, 0, "test")
    again = sources.load_source(source, 0, "test")
    assert wave.dtype == np.float32 and np.array_equal(wave, again) and len(wave) > sources.SAMPLE_RATE // 20
    assert abs(float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) - sources.TARGET_RMS) < 0.02
    assert list(sources.cache_dir().glob("*.npy"))


def test_pitch_shift_moves_the_measured_pitch_and_keeps_the_length():
    librosa = pytest.importorskip("librosa")
    flute = sources.load_source("instrument:flute", 0, "train")[: 2 * sources.SAMPLE_RATE]
    plain = {"rate": 1.0, "reverb_t60": 0.0}
    shifted = scene_render._vary(flute, {**plain, "pitch": 2.0})
    assert len(shifted) == len(flute)
    f0 = [np.median(librosa.yin(x, fmin=200, fmax=2000, sr=sources.SAMPLE_RATE)) for x in (flute, shifted)]
    assert f0[1] / f0[0] == pytest.approx(2 ** (2 / 12), rel=0.01)


def test_playback_starts_at_onsets_disjoint_between_splits():
    dog = sources.load_source("animal:dog", 0, "train")  # barks separated by pauses: several onsets
    train = {scene_render.crop_start(dog, c, "train") for c in range(20)}
    held = {scene_render.crop_start(dog, c, "test") for c in range(20)}
    assert len(train) >= 2 and len(held) >= 2 and not train & held
    librosa = pytest.importorskip("librosa")
    onsets = librosa.onset.onset_detect(y=dog, sr=sources.SAMPLE_RATE, units="time")
    for start in (train | held) - {0}:  # each start is an onset librosa finds too (within 0.1 s)
        assert np.min(np.abs(onsets - start / sources.SAMPLE_RATE)) < 0.1, (start, onsets)
