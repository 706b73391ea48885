"""The retrieval task's caption towers (``model.text``), twin batches (``data.twin_batches``) and its baselines: the
bag-of-words tower trained end to end on its own (``bag_of_words``) and the probe on the model's item embeddings
(``bag_of_words_on_model_items``), on a small COCO-Karpathy-format scene build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from xmodal.errors import ConfigError, DataError

TINY = {"embed_dim": 16, "channels": [8, 16], "stem_stride": 2, "grid": 2, "text_hidden": 32, "dropout": 0.0}
TRAIN = {"max_steps": 6, "batch_size": 4, "lr": 3e-3, "warmup": 1, "seed": 0, "threads": 1}


@pytest.fixture(scope="module")
def coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    return Path(get_builder("coco-karpathy-scenes").build(tmp_path_factory.mktemp("coco"), n=16, test_n=8, size=32,
                                                          seed=1))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # decoded images and MiniLM features, shared by the tests


def recipe(root: Path, cache: Path, model: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {"task": "retrieval",
            "data": {"protocol": "coco-5k", "root": str(root), "cache": str(cache), "image_size": 32, **data},
            "model": {**TINY, **(model or {})}, "train": dict(TRAIN)}


@pytest.mark.parametrize(("section", "key", "value", "match"), [
    ("model", "text", "lstm", "model.text: unknown 'lstm'"),
    ("model", "text_heads", 5, "model.text_heads: 5 must divide model.text_hidden"),
    ("model", "text_layers", 0, "model.text_layers"),
    ("data", "max_tokens", 0, "data.max_tokens"),
    ("data", "twin_batches", "often", "data.twin_batches"),
])
def test_bad_options_are_typed_errors(tmp_path: Path, section: str, key: str, value: Any, match: str) -> None:
    from xmodal.tasks.retrieval import check

    cfg = recipe(tmp_path, tmp_path / "cache", model={"text": "transformer"})
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=match):
        check(cfg)


def test_twin_batches_hold_each_twin_beside_its_original(coco: Path, cache: Path) -> None:
    from xmodal.tasks.retrieval import build
    from xmodal.tasks.retrieval_data import TwinBatches, collate

    bundle = build(recipe(coco, cache, twin_batches=True))
    pairs = bundle.train_set
    assert isinstance(pairs, TwinBatches) and len(pairs) == len(pairs.items) // 2
    images = {im["imgid"]: im for im in json.loads((coco / "dataset_coco.json").read_text())["images"]}
    batch = collate([pairs[0], pairs[3]])
    assert batch["image"].shape[0] == 4 and batch["text"].shape == (4, 384)
    for k, pair in zip((0, 3), (batch["id"][:2], batch["id"][2:])):
        original, twin = (images[int(i)] for i in pair)
        # the builder writes a scene's hard negative right after it: split indices 2k and 2k + 1
        assert (original["filename"], twin["filename"]) == (f"scene_train_1_{2 * k:06d}.jpg",
                                                            f"scene_train_1_{2 * k + 1:06d}.jpg")
        assert [s["raw"] for s in original["sentences"]] != [s["raw"] for s in twin["sentences"]]
    with pytest.raises(DataError, match="twin_batches"):
        TwinBatches(_one_item(pairs.items))


def _one_item(items: Any) -> Any:
    from xmodal.tasks.retrieval_data import Listing, RetrievalSet

    caps = items.captions_of[0]
    listing = Listing(items.listing.keys[:1], items.listing.paths[:1], [items.listing.captions[c] for c in caps],
                      [0] * len(caps))
    return RetrievalSet(listing, {k: v[:1] for k, v in items.media.items()}, items.text[caps], True)


def test_transformer_tower_reads_word_order_and_ignores_padding() -> None:
    from xmodal.tasks.retrieval_text import BagOfWordsTower, TokenAttentionTower, tfidf

    torch.manual_seed(0)
    tower = TokenAttentionTower(hidden=32, layers=1, heads=4, max_tokens=8, dropout=0.0).eval()
    x = torch.randn(1, 8, 384)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    swapped = x.clone()
    swapped[0, [1, 3]] = x[0, [3, 1]]  # two words trade places
    padded = x.clone()
    padded[0, 5:] = torch.randn(3, 384)  # other values where the mask says padding
    with torch.no_grad():
        out, out_swapped, out_padded = (tower(t, mask) for t in (x, swapped, padded))
    assert (out - out_swapped).abs().max() > 1e-3  # order reaches the output
    assert torch.allclose(out, out_padded, atol=1e-5)  # padding does not
    # the bag of words cannot tell a relation from its mirror: the two captions get the same row, the same output
    rows = tfidf(["a dog left of a cat", "a red cat"], ["a dog left of a cat", "a cat left of a dog"]).float()
    assert torch.equal(rows[0], rows[1])
    bow = BagOfWordsTower(rows.shape[1], 8)
    assert torch.equal(bow(rows[:1]), bow(rows[1:]))


def test_bag_of_words_is_trained_on_its_own_and_the_probe_reads_the_model(coco: Path, cache: Path) -> None:
    from xmodal.tasks.retrieval import build

    bundle = build(recipe(coco, cache, model={"text": "transformer"}, twin_batches=True))
    assert bundle.baselines is not None and bundle.val_set is not None
    first = bundle.baselines(bundle.val_set)
    assert set(first) == {"random", "bag_of_words", "bag_of_words_on_model_items"}
    with torch.no_grad():  # another model under test: only the probe, which reads its item tower, may change
        for p in bundle.model.parameters():
            p.add_(torch.randn_like(p))
    second = bundle.baselines(bundle.val_set)
    assert second["bag_of_words"] == first["bag_of_words"] and second["random"] == first["random"]
    assert second["bag_of_words_on_model_items"] != first["bag_of_words_on_model_items"]


def test_fit_trains_the_bag_of_words_tower(coco: Path, cache: Path) -> None:
    from xmodal.tasks.retrieval import BowBaseline, ModelConfig, build, loss, train_bag_of_words
    from xmodal.tasks.retrieval_data import collate
    from xmodal.tasks.retrieval_text import tfidf

    bundle = build(recipe(coco, cache))
    train_set, val_set = bundle.train_set, bundle.val_set
    models = []
    for steps in (1, 40):
        spec = BowBaseline("image", ModelConfig(**TINY), 64, {**TRAIN, "max_steps": steps}, False)
        model, test_bow = train_bag_of_words(spec, train_set, val_set, torch.device("cpu"))
        models.append(model)
    caps = train_set.listing.captions
    assert models[1].text.linear.in_features == test_bow.text.shape[1] == len(tfidf(caps, caps)[0])
    rows = train_set.with_text(tfidf(caps, caps).float())
    batch = collate([rows.item(i) | {"text": rows.text[rows.captions_of[i][0]]} for i in range(len(rows))])
    with torch.no_grad():
        before, after = (loss(m(batch), batch).item() for m in models)
    assert after < 0.5 * before  # 40 steps fit the training pairs far better than 1 step


def test_metrics_json_reports_both_bag_of_words_rows(coco: Path, cache: Path, tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from xmodal.cli import app

    cfg = recipe(coco, cache, model={"text": "transformer"}, twin_batches=True)
    cfg["train"].update({"max_steps": 2, "log_every": 2, "checkpoint_every": 2, "progress": False,
                         "tensorboard": False})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"random", "bag_of_words", "bag_of_words_on_model_items"}
    for row in (metrics["model"], *metrics["baselines"].values()):
        assert row["mean_R@1"] == (row["t2i_R@1"] + row["i2t_R@1"]) / 2


def test_token_states_equal_minilm_padded_to_max_tokens(tmp_path: Path) -> None:
    from xmodal.tasks import fields
    from xmodal.tasks.retrieval_text import token_states
    from xmodal.transforms.cache import TransformCache

    texts = ["A red dog is to the left of the cat.", "an owl",
             "A blue duck next to a violin and a drum kit, played loudly in the rain at night", "two cats"]
    feats, mask = token_states(texts, 16, TransformCache(tmp_path))  # chunks padded to their longest caption
    ref, ref_mask = fields.token_features(texts, max_length=16)  # every caption padded to 16
    assert torch.equal(mask, ref_mask) and mask[2].all()  # the long caption is cut at 16 word pieces
    assert torch.equal(feats, ref.half())  # the same states, to float16
