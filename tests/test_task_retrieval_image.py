"""Image-text retrieval end to end on COCO-Karpathy-format scenes: build -> xmodal train -> xmodal predict ->
xmodal eval retrieval (coco-5k) prints what training measured, with both baselines beside the model; the TF-IDF of
the bag-of-words tower equals scikit-learn's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from retrieval_run import check_run, reduced_recipe, train_predict_eval

from xmodal.errors import ConfigError, DataError

TINY = {"embed_dim": 64, "channels": [8, 16, 32], "stem_stride": 2, "grid": 2, "text_hidden": 128, "dropout": 0.0}


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("coco-karpathy-scenes").build(tmp_path / "coco", n=24, test_n=20, size=48, seed=1,
                                                          workers=2))
    recipe = reduced_recipe(tmp_path, "retrieval_image_text", root, TINY, steps=8, data={"image_size": 48})
    metrics, printed = train_predict_eval(tmp_path, recipe, root / "dataset_coco.json", "coco-5k")
    check_run(metrics, printed, ("t2i", "i2t"), n_items=20)


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
