"""Audio-text retrieval end to end on AudioCaps-format scenes with audible order twins: build -> xmodal train ->
xmodal predict -> xmodal eval retrieval (audiocaps), the model above the baselines."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_run import reduced_recipe, train_predict_eval

TINY = {"embed_dim": 32, "audio_channels": [32, 64], "grid": 4, "text_hidden": 64, "dropout": 0.0}


@pytest.mark.slow  # renders soundtracks and trains through the CLI
def test_build_train_predict_eval_beats_baselines(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("audiocaps-scenes").build(tmp_path / "ac", n=100, test_n=30, duration=4.0,
                                                      order_twins=True, seed=1, workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_audio_text", root, TINY, steps=60, data={"max_seconds": 4.0})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "test.csv", "audiocaps")
    model, base = metrics["model"], metrics["baselines"]
    assert metrics["primary"] == "mean_R@1" and set(base) == {"random", "bag_of_words"}
    for key in ("t2a_R@1", "t2a_R@10", "t2a_MedR", "a2t_R@1", "a2t_MeanR"):
        assert printed[key] == pytest.approx(model[key], abs=1e-9), key
    assert model["t2a_R@5"] > base["random"]["t2a_R@5"] + 10, metrics
    assert model["t2a_R@5"] >= base["bag_of_words"]["t2a_R@5"], metrics
