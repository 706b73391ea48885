"""Video-text retrieval end to end on MSR-VTT-format scenes with the mixture of embedding experts: build ->
xmodal train -> xmodal predict -> xmodal eval retrieval (msrvtt-1ka), the model above the baselines."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_run import reduced_recipe, train_predict_eval

TINY = {"embed_dim": 32, "channels": [8, 16], "stem_stride": 2, "grid": 2, "motion_channels": [8, 16],
        "audio_channels": [32, 32], "text_hidden": 64, "dropout": 0.0}


@pytest.mark.slow  # renders clips and trains through the CLI
def test_build_train_predict_eval_beats_baselines(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("msrvtt-scenes").build(tmp_path / "msrvtt", n=60, test_n=20, size=32, duration=4.0,
                                                   fps=2.0, seed=1, workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_video_text", root, TINY, steps=40,
                            data={"frames": 4, "frame_size": 32, "max_seconds": 4.0})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "MSRVTT_JSFUSION_test.csv", "msrvtt-1ka")
    model, base = metrics["model"], metrics["baselines"]
    assert metrics["primary"] == "mean_R@1" and set(base) == {"random", "bag_of_words"}
    for key in ("t2v_R@1", "t2v_R@5", "t2v_MedR", "v2t_R@1", "v2t_MeanR"):
        assert printed[key] == pytest.approx(model[key], abs=1e-9), key
    assert model["t2v_R@5"] > base["random"]["t2v_R@5"] + 10, metrics
    assert model["t2v_R@5"] >= base["bag_of_words"]["t2v_R@5"], metrics
