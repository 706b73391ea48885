"""Class-conditional generation of sklearn's real digits through the trainer (reduced CI form of
``recipes/generative_digits.yaml``): a classifier trained on real digits recognises the requested class in the
samples of guided diffusion and of the conditional VAE far above chance (0.1), and the guided diffusion model
(the recipe's cosine schedule and v-prediction) beats the per-pixel Gaussian of each class on FID."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_generative_learning import _metrics

pytestmark = pytest.mark.slow


# fid_ratio: the model's FID must be below this fraction of the per-pixel Gaussian's (same 30 samples per
# class, same held-out digits). Measured for diffusion at these settings: 43.9 against 66.2 (0.66); at 800
# steps 48.3 (0.73). None: not asserted (the reduced CVAE is only checked for class accuracy).
@pytest.mark.parametrize(("backbone", "steps", "accuracy", "fid_ratio"),
                         [("diffusion", 1500, 0.6, 0.8), ("cvae", 1500, 0.6, None)])
def test_digit_samples_are_recognised_as_their_class(tmp_path: Path, backbone: str, steps: int,
                                                     accuracy: float, fid_ratio: float | None) -> None:
    m = _metrics("generative_digits.yaml", tmp_path, [f"model.backbone={backbone}", f"train.max_steps={steps}",
                                                      "train.batch_size=128", "data.eval_per_class=30",
                                                      "model.ema_decay=0.995"])
    assert m["primary"] == "fid" and set(m["baselines"]) == {"pixel_gaussian", "real_heldout"}
    assert m["baselines"]["real_heldout"]["class_accuracy"] > 0.9  # the scoring classifier reads real digits
    assert m["model"]["class_accuracy"] > accuracy, m["model"]  # chance: 0.1
    if fid_ratio is not None:
        pixel = m["baselines"]["pixel_gaussian"]["fid"]
        assert m["model"]["fid"] < fid_ratio * pixel, (m["model"], pixel)
