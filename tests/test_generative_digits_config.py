"""``generative_digits``'s ``model.schedule`` and ``model.prediction``: the recipe's values reach the
diffusion (betas against the cosine schedule's formula worked by hand here, not through xmodal's function),
and bad values are a ConfigError naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from xmodal.config.recipe import load_recipe
from xmodal.errors import ConfigError
from xmodal.tasks.base import build_task
from xmodal.tasks.generative_digits import DiffusionDigits

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "generative_digits.yaml"


def _diffusion(settings: list[str]) -> DiffusionDigits:
    model = build_task(load_recipe(RECIPE, ["model.hidden=8", *settings])).model
    assert isinstance(model, DiffusionDigits)
    return model


def test_the_recipe_trains_v_prediction_on_cosine_betas() -> None:
    diffusion = _diffusion(["model.timesteps=20"]).diffusion
    assert diffusion.model_mean_type == "v"

    def abar(s: float) -> float:  # Nichol & Dhariwal Eq. 17, with their s = 0.008
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    expected = [min(1 - abar((i + 1) / 20) / abar(i / 20), 0.999) for i in range(20)]
    np.testing.assert_allclose(diffusion.betas, expected, rtol=1e-12, atol=0)
    assert diffusion.betas[-1] == 0.999  # the clip at the last step


def test_linear_epsilon_is_still_selectable() -> None:
    settings = ["model.schedule=linear", "model.prediction=epsilon", "model.timesteps=1000"]
    diffusion = _diffusion(settings).diffusion
    assert diffusion.model_mean_type == "epsilon"
    # improved-diffusion's linear schedule at T = 1000: 1e-4 .. 0.02
    assert diffusion.betas[0] == pytest.approx(1e-4, rel=1e-12) and diffusion.betas[-1] == pytest.approx(0.02)


@pytest.mark.parametrize(("setting", "field"), [("model.schedule=quadratic", "model.schedule"),
                                                ("model.prediction=score", "model.prediction")])
def test_bad_schedule_or_prediction_is_a_config_error(setting: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_task(load_recipe(RECIPE, [setting]))
