"""Audio-text retrieval end to end on AudioCaps-format scenes with audible order twins: build -> xmodal train ->
xmodal predict -> xmodal eval retrieval (audiocaps) prints what training measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_run import check_run, reduced_recipe, train_predict_eval

TINY = {"embed_dim": 32, "audio_channels": [32, 64], "grid": 4, "text_hidden": 64, "dropout": 0.0}


@pytest.mark.slow  # renders soundtracks and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("audiocaps-scenes").build(tmp_path / "ac", n=12, test_n=10, duration=4.0,
                                                      order_twins=True, seed=1, workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_audio_text", root, TINY, steps=6, data={"max_seconds": 4.0})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "test.csv", "audiocaps")
    check_run(metrics, printed, ("t2a", "a2t"), n_items=10)
