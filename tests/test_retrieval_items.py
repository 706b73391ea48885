"""The retrieval task's frozen item features (``model.item: sprite_encoder``) and the multi-positive loss
(``data.captions_per_item``), on a small COCO-Karpathy-format scene build. The default sprite encoder is trained
once per machine on first use (92 s); these tests swap in a tiny one (3 steps), so they check the plumbing and the
hand-worked values, not the features' quality."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xmodal.errors import ConfigError, DataError

TINY = {"embed_dim": 16, "channels": [8, 16], "stem_stride": 2, "grid": 2, "text_hidden": 32, "dropout": 0.0,
        "item": "sprite_encoder", "item_input": 32, "item_hidden": 8}
TRAIN = {"max_steps": 4, "batch_size": 4, "lr": 3e-3, "warmup": 1, "seed": 0, "threads": 1}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from xmodal.data.synth import sprite_encoder as se

    recipe = replace(se.EncoderRecipe(), steps=3, batch_size=4, sprites_per_class=2, backgrounds=4)
    return se.load_sprite_encoder(str(tmp_path_factory.mktemp("encoder")), recipe)


@pytest.fixture
def use_tiny(monkeypatch: pytest.MonkeyPatch, tiny_encoder: Any) -> Any:
    from xmodal.data.synth import sprite_encoder as se

    monkeypatch.setattr(se, "load_sprite_encoder", lambda *a, **k: tiny_encoder)
    monkeypatch.setattr(se, "weights_key", lambda *a, **k: "tiny-test-encoder")
    return tiny_encoder


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    return Path(get_builder("coco-karpathy-scenes").build(tmp_path_factory.mktemp("coco"), n=16, test_n=8, size=32,
                                                          seed=1))


def recipe(root: Path, cache: Path, model: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {"task": "retrieval",
            "data": {"protocol": "coco-5k", "root": str(root), "cache": str(cache), "image_size": 32, **data},
            "model": {**TINY, **(model or {})}, "train": dict(TRAIN)}


def test_grid_features_are_the_encoder_map_and_hand_computed_colour_statistics(tmp_path: Path,
                                                                               use_tiny: Any) -> None:
    from xmodal.tasks.retrieval_items import feature_channels, sprite_grid_features
    from xmodal.transforms.cache import TransformCache

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8))
    cache = TransformCache(str(tmp_path))
    feats = sprite_grid_features(images, 64, cache)  # 64 px: four stride-2 layers -> a 4 x 4 grid
    assert feats.shape == (3, feature_channels(), 4, 4) and feats.dtype == torch.float16
    with torch.no_grad():
        fmap = use_tiny(images.float() / 255, size=(64, 64))["map"]
    torch.testing.assert_close(feats[:, :64].float(), fmap, atol=2e-2, rtol=2e-3)  # float16 storage
    # cell (row 1, column 2) of image 2 covers pixels 8..15 x 16..23 of the 32-px image
    cell = images[2, :, 8:16, 16:24].double().numpy() / 255
    want = np.concatenate([cell.mean((1, 2)), cell.std((1, 2))])  # population standard deviation
    np.testing.assert_allclose(feats[2, 64:, 1, 2].double().numpy(), want, atol=1e-3)
    assert torch.equal(sprite_grid_features(images, 64, cache), feats)  # served from the cache


def test_frozen_tower_keeps_position() -> None:
    from xmodal.tasks.retrieval_items import FrozenGridTower

    torch.manual_seed(0)
    tower = FrozenGridTower(5, 3, 8, 4, 0.0).eval()
    x = torch.randn(2, 5, 3, 3)
    out, mirrored = tower(x), tower(x.flip(-1))  # the same cells, left and right swapped
    assert out.shape == (2, 4) and not torch.allclose(out, mirrored, atol=1e-3)
    with pytest.raises(ValueError, match="3 x 3 feature grid"):
        tower(torch.randn(1, 5, 4, 4))


def test_multi_positive_loss_equals_the_hand_written_sums() -> None:
    from xmodal.nn.objectives import info_nce
    from xmodal.tasks.retrieval import loss

    torch.manual_seed(0)
    items, text, scale = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(12, 8), dim=1), 10.0
    got = loss({"item_emb": items, "text_emb": text, "logit_scale": torch.tensor(scale)}, {})
    sim = scale * text @ items.T  # (12 captions, 4 items); captions 3i .. 3i + 2 describe item i
    t2i = sum(-torch.log(torch.exp(sim[r, r // 3]) / torch.exp(sim[r]).sum()) for r in range(12)) / 12
    i2t = sum(-torch.log(torch.exp(sim[3 * i:3 * i + 3, i]).sum() / torch.exp(sim[:, i]).sum())
              for i in range(4)) / 4
    torch.testing.assert_close(got, (t2i + i2t) / 2, atol=1e-5, rtol=1e-5)
    one = F.normalize(torch.randn(4, 8), dim=1)  # k = 1: CLIP's loss
    torch.testing.assert_close(loss({"item_emb": items, "text_emb": one, "logit_scale": torch.tensor(scale)}, {}),
                               info_nce(items, one, scale), atol=1e-6, rtol=1e-6)


def test_sprite_items_train_model_and_bag_of_words_with_k_captions(coco: Path, tmp_path: Path,
                                                                  use_tiny: Any) -> None:
    from xmodal.tasks.retrieval import build, fit
    from xmodal.tasks.retrieval_data import collate
    from xmodal.tasks.retrieval_items import FrozenGridTower
    from xmodal.train.config import parse_train_config

    cfg = recipe(coco, tmp_path, model={"text": "hybrid"}, captions_per_item=3)
    bundle = build(cfg)
    train = bundle.train_set
    sample = train[0]
    assert "image" not in sample and sample["image_features"].shape[-2:] == (2, 2)  # 32 px -> 2 x 2
    # hybrid: 32 token rows, then the TF-IDF row packed into rows of 384
    assert sample["text"].shape[::2] == (3, 384) and sample["text"].shape[1] > 32
    assert sample["text_mask"].shape == (3, 32)
    rows = [r for r in range(len(train.text)) if train.text_mask[r].any()]
    picked = {next(r for r in rows if torch.equal(train.text[r].float(), t)) for t in sample["text"]}
    assert len(picked) == 3 and picked <= set(train.captions_of[0])  # three distinct captions of item 0
    batch = collate([train[i] for i in range(4)])
    out = bundle.model(batch)
    assert out["item_emb"].shape == (4, 16) and out["text_emb"].shape == (12, 16)
    before = bundle.loss(out, batch).item()
    fit(bundle.model, train, parse_train_config({**TRAIN, "max_steps": 12, "lr": 1e-2}))
    bundle.model.train()
    torch.manual_seed(0)
    assert bundle.loss(bundle.model(batch), batch).item() < before
    rows_ = bundle.baselines(bundle.val_set)
    assert set(rows_) == {"random", "bag_of_words", "bag_of_words_on_model_items"}
    assert 0 <= rows_["bag_of_words"]["t2i_R@10"] <= 100
    assert isinstance(bundle.model.item, FrozenGridTower)
    assert bundle.val_set.captions_per_item == 1  # evaluation reads each caption once


def test_bag_of_words_baseline_gets_the_same_frozen_item_tower(coco: Path, tmp_path: Path, use_tiny: Any) -> None:
    from xmodal.tasks.retrieval import build, train_bag_of_words
    from xmodal.tasks.retrieval_items import FrozenGridTower

    bundle = build(recipe(coco, tmp_path, model={"text": "minilm"}, captions_per_item=2))
    spec = bundle.baselines.keywords["bow"]
    trained, test_bow = train_bag_of_words(spec, bundle.baselines.keywords["train_set"], bundle.val_set,
                                           torch.device("cpu"))
    assert isinstance(trained.item, FrozenGridTower)
    assert sum(p.numel() for p in trained.item.parameters()) == sum(p.numel() for p in bundle.model.item.parameters())
    assert test_bow.media is bundle.val_set.media  # the same frozen features, not recomputed


@pytest.mark.parametrize(("model", "data", "error", "match"), [
    ({"item": "resnet"}, {}, ConfigError, "model.item: unknown 'resnet'"),
    ({"item_input": 8}, {}, ConfigError, "model.item_input must be >= 16"),
    ({}, {"captions_per_item": 0}, ConfigError, "data.captions_per_item"),
    ({"text": "hybrid", "text_heads": 5}, {}, ConfigError, "model.text_heads: 5 must divide"),
    ({}, {"protocol": "audiocaps"}, ConfigError, "sprite_encoder encodes images and frames"),
])
def test_bad_options_are_typed_errors(tmp_path: Path, model: dict[str, Any], data: dict[str, Any],
                                      error: type[Exception], match: str) -> None:
    from xmodal.tasks.retrieval import check

    with pytest.raises(error, match=match):
        check(recipe(tmp_path, tmp_path, model=model, **data))


def test_more_captions_per_item_than_an_item_has_is_a_data_error(coco: Path, tmp_path: Path,
                                                                 use_tiny: Any) -> None:
    from xmodal.tasks.retrieval import build

    with pytest.raises(DataError, match="data.captions_per_item: 6 captions"):
        build(recipe(coco, tmp_path, model={"item": "cnn"}, captions_per_item=6))


def test_hybrid_tower_is_the_token_tower_plus_a_linear_map_of_the_packed_tfidf_row() -> None:
    from xmodal.tasks.retrieval_text import HybridTower, pack_tfidf, tfidf

    train = ["a red dog left of a cat", "a blue cat right of a dog", "a green pig"]
    rows = tfidf(train, ["a cat left of a red dog", "a green pig"])  # (2, vocabulary)
    torch.manual_seed(0)
    tokens, mask = torch.randn(2, 5, 384).half(), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]).bool()
    packed = pack_tfidf(tokens, rows)
    assert packed.shape == (2, 6, 384) and torch.equal(packed[:, :5], tokens)  # 8 words fit one extra row
    assert torch.equal(packed[:, 5, : rows.shape[1]], rows.half()) and not packed[:, 5, rows.shape[1]:].any()
    tower = HybridTower(rows.shape[1], 16, 1, 4, 5, 0.0).eval()
    want = tower.tokens(tokens.float(), mask) + rows.half().float() @ tower.words.weight.T + tower.words.bias
    torch.testing.assert_close(tower(packed.float(), mask), want, atol=1e-5, rtol=1e-5)
