"""The sprite encoder: trained deterministically from its recipe, recognising the vocabulary's classes in frames
composed from the held-out split's scales, rotations and textures (never drawn in training) far above chance,
and cached by content: a second load trains nothing and gives the same weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.data.synth import sprite_encoder as se
from xmodal.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = replace(se.EncoderRecipe(), steps=3, batch_size=4, sprites_per_class=2, backgrounds=4)


def test_cell_targets_by_hand() -> None:
    owner = np.full((1, 14, 14), se.BACKGROUND, np.int64)  # 2 x 2 pixels per cell
    owner[0, 0, 0] = 3  # a quarter of cell (0, 0): above the 15 % cover
    owner[0, 2:4, 2:4] = 5  # all of cell (1, 1)
    owner[0, 4:6, 4] = 7  # half of cell (2, 2) ...
    owner[0, 4, 5] = 8  # ... a quarter by another class: the larger cover wins
    t = se.cell_targets(owner)[0]
    assert t[0, 0] == 3 and t[1, 1] == 5 and t[2, 2] == 7
    assert (t == se.BACKGROUND).sum() == 49 - 3


def test_composer_draws_known_classes_and_pools() -> None:
    comp = se.FrameComposer(np.random.default_rng(0), TINY)
    frames, targets, drawn = comp.batch(6)
    assert frames.shape == (6, 128, 128, 3) and frames.dtype == np.uint8 and targets.shape == (6, 7, 7)
    for t, classes in zip(targets, drawn):
        assert set(np.unique(t)) - {se.BACKGROUND} <= set(classes)
    with pytest.raises(ConfigError, match="pool"):
        se.FrameComposer(np.random.default_rng(0), TINY, pool="test")


@pytest.mark.slow  # three short trainings (about 5 s on an idle core)
def test_training_is_deterministic() -> None:
    a, b = se.train_sprite_encoder(TINY).state_dict(), se.train_sprite_encoder(TINY).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = se.train_sprite_encoder(replace(TINY, seed=1)).state_dict()
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])


def test_cache_reuse(tmp_path: Path, monkeypatch) -> None:
    first = se.load_sprite_encoder(str(tmp_path), TINY)
    assert (tmp_path / f"{se.weights_key(TINY)}.safetensors").is_file()
    monkeypatch.setattr(se, "train_sprite_encoder", lambda recipe: pytest.fail("trained again"))
    second = se.load_sprite_encoder(str(tmp_path), TINY)
    assert all(torch.equal(x, y) for x, y in zip(first.state_dict().values(), second.state_dict().values()))
    assert se.weights_key(TINY) != se.weights_key(replace(TINY, steps=4))
    out = se.encode_frames(second, np.zeros((3, 128, 128, 3), np.uint8))
    assert out["map"].shape == (3, 7, 7, se.CHANNELS) and out["pooled"].shape == (3, se.CHANNELS)
    assert torch.equal(out["pooled"], out["map"].amax((1, 2)))


@pytest.mark.slow  # the default encoder: trained once per machine on first use (about 2 min), then cached
def test_recognises_heldout_renders_far_above_chance() -> None:
    model = se.load_sprite_encoder()
    recipe = replace(se.EncoderRecipe(), sprites_per_class=6, backgrounds=32)
    comp = se.FrameComposer(np.random.default_rng(123), recipe, pool="heldout")
    frames, _, drawn = comp.batch(260, max_objects=1)
    probs = se.encode_frames(model, frames)["probs"]
    guess = probs[..., : se.BACKGROUND].amax((1, 2)).argmax(-1).numpy()
    accuracy = float((guess == np.array([d[0] for d in drawn])).mean())
    # one object of 26 classes at held-out scales, rotations and textures; chance is 1 / 26 = 3.8 %
    assert accuracy > 0.6, accuracy
