"""Image-text retrieval end to end on COCO-Karpathy-format scenes: build -> xmodal train -> xmodal predict ->
xmodal eval retrieval (coco-5k), the model above the random and bag-of-words baselines; the TF-IDF of the
bag-of-words tower equals scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from retrieval_run import reduced_recipe, train_predict_eval

from xmodal.errors import ConfigError, DataError

TINY = {"embed_dim": 64, "channels": [8, 16, 32], "stem_stride": 2, "grid": 2, "text_hidden": 128, "dropout": 0.0}


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval_beats_baselines(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("coco-karpathy-scenes").build(tmp_path / "coco", n=80, test_n=40, size=48, seed=1,
                                                          workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_image_text", root, TINY, steps=60, data={"image_size": 48})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "dataset_coco.json", "coco-5k")
    model, base = metrics["model"], metrics["baselines"]
    assert metrics["primary"] == "mean_R@1" and metrics["split"] == "dataset_coco"
    assert set(base) == {"random", "bag_of_words"}
    for key in ("t2i_R@1", "t2i_R@5", "t2i_R@10", "t2i_MedR", "t2i_MeanR", "i2t_R@1", "i2t_MedR"):
        assert printed[key] == pytest.approx(model[key], abs=1e-9), key  # sim.npy scores as training did
    assert model["mean_R@1"] > max(b["mean_R@1"] for b in base.values()) + 5, metrics
    assert model["t2i_R@5"] > base["bag_of_words"]["t2i_R@5"], metrics
    # 40 test images: random embeddings rank the right one first about 1 time in 40
    assert base["random"]["t2i_R@1"] < 15


def test_tfidf_equals_scikit_learn() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from xmodal.tasks.retrieval import tfidf

    train = ["A red dog is to the left of the cat.", "the cat, the dog and a violin", "An owl hoots; a dog barks",
             "A picture of a blue duck"]
    test = ["a dog and a cat", "a green frog croaks", "The owl is to the right of the red dog dog"]
    ref = TfidfVectorizer().fit(train).transform(test).toarray()
    assert np.allclose(tfidf(train, test).numpy(), ref, atol=1e-12)


def test_bad_recipes_and_missing_files_are_named(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    with pytest.raises(ConfigError, match="protocol"):
        build_task({"task": "retrieval", "data": {"protocol": "coco-10k", "root": str(tmp_path)}})
    with pytest.raises(DataError, match="dataset_coco.json"):
        build_task({"task": "retrieval", "data": {"root": str(tmp_path / "nothing")}})
    with pytest.raises(ConfigError, match="no scene builder"):
        build_task({"task": "retrieval", "data": {"protocol": "flickr", "build": {"n": 10}}})
