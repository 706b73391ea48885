"""Every backbone learns a known distribution through the trainer (reduced CI forms of
``recipes/generative_toy.yaml`` and ``recipes/generative_digits.yaml``; the full runs and their numbers are in
docs/generative.md).

- 2-D toy distributions: the energy distance of the samples to held-out points is well below that of a single
  Gaussian fitted to the training set (the fixed baseline), and not below the training set's own distance to the
  held-out points (the noise floor: a model cannot beat the data themselves by much).
(The digits are in test_generative_learning_digits.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xmodal.config.recipe import load_recipe
from xmodal.tasks.base import build_task
from xmodal.train.loop import train

REPO = Path(__file__).resolve().parents[1]
QUIET = ["train.eval_every=0", "train.sample_every=0", "train.checkpoint_every=0", "train.progress=false",
         "train.tensorboard=false", "train.threads=1"]

pytestmark = pytest.mark.slow


def _metrics(recipe: str, out: Path, settings: list[str]) -> dict:
    cfg = load_recipe(REPO / "recipes" / recipe, [*QUIET, *settings])
    torch.manual_seed(0)
    train(build_task(cfg), cfg, out_dir=out)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize(("backbone", "distribution", "steps", "ratio"), [
    ("diffusion", "ring", 1500, 0.8),
    ("gan", "ring", 600, 0.5),
    ("vae", "ring", 1000, 0.7),
])
def test_toy_backbones_beat_a_gaussian_fit(tmp_path: Path, backbone: str, distribution: str, steps: int,
                                           ratio: float) -> None:
    latent = ["model.latent_dim=2"] if backbone == "vae" else []  # a ring is a 1-D curve: a small latent
    batch = 512 if backbone == "diffusion" else 256  # diffusion learns slowest (half the recipe's 3,000 steps)
    m = _metrics("generative_toy.yaml", tmp_path, [*latent, f"model.backbone={backbone}", f"data.distribution={distribution}",
                                                   f"train.max_steps={steps}", f"train.batch_size={batch}",
                                                   "data.n_val=1000", "model.sample_steps=50"])
    model = m["model"]["energy_distance"]
    gaussian, floor = m["baselines"]["gaussian"]["energy_distance"], m["baselines"]["training_set"]["energy_distance"]
    assert m["primary"] == "energy_distance" and m["n"] == 1000
    assert model < ratio * gaussian, (model, gaussian)
    assert model > 0.5 * floor, (model, floor)  # not better than the data themselves
