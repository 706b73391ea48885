"""Video-text retrieval end to end on MSR-VTT-format scenes with the mixture of embedding experts: build ->
xmodal train -> xmodal predict -> xmodal eval retrieval (msrvtt-1ka) prints what training measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_run import check_run, reduced_recipe, train_predict_eval

TINY = {"embed_dim": 32, "channels": [8, 16], "stem_stride": 2, "grid": 2, "motion_channels": [8, 16],
        "audio_channels": [32, 32], "text_hidden": 64, "dropout": 0.0}


@pytest.mark.slow  # renders clips and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("msrvtt-scenes").build(tmp_path / "msrvtt", n=12, test_n=8, size=32, duration=4.0,
                                                   fps=2.0, seed=1, workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_video_text", root, TINY, steps=4,
                            data={"frames": 4, "frame_size": 32, "max_seconds": 4.0})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "MSRVTT_JSFUSION_test.csv", "msrvtt-1ka")
    check_run(metrics, printed, ("t2v", "v2t"), n_items=8)
