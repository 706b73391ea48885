"""Class-conditional generation of sklearn's real digits through the trainer (reduced CI form of
``recipes/generative_digits.yaml``): a classifier trained on real digits recognises the requested class in the
samples of guided diffusion and of the conditional VAE far above chance (0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_generative_learning import _metrics

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("backbone", "steps", "accuracy"), [("diffusion", 1500, 0.6), ("cvae", 1500, 0.6)])
def test_digit_samples_are_recognised_as_their_class(tmp_path: Path, backbone: str, steps: int,
                                                     accuracy: float) -> None:
    m = _metrics("generative_digits.yaml", tmp_path, [f"model.backbone={backbone}", f"train.max_steps={steps}",
                                                      "train.batch_size=128", "data.eval_per_class=30",
                                                      "model.ema_decay=0.995"])
    assert m["primary"] == "fid" and set(m["baselines"]) == {"pixel_gaussian", "real_heldout"}
    assert m["baselines"]["real_heldout"]["class_accuracy"] > 0.9  # the scoring classifier reads real digits
    assert m["model"]["class_accuracy"] > accuracy, m["model"]  # chance: 0.1
