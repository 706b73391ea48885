"""Weakly supervised grounding end to end on RefCOCO-format scenes: xmodal train -> xmodal predict (heatmap npz),
the pointing game recomputed from the predicted points and masks rasterised from the raw instances, the point
baselines by hand, training that reads no boxes, and a reduced run beating every baseline."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from xmodal.cli import app

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"channels": [8, 16, 16], "stem_stride": 4, "dim": 16, "heads": 2}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    return Path(get_builder("refcoco-scenes").build(tmp_path_factory.mktemp("refcoco_weak"), n=24, seed=3))


def _recipe(tmp_path: Path, root: Path, steps: int = 4, model: dict | None = None) -> Path:
    """The committed recipe in its reduced CI form (``model``: what replaces the recipe's model options; the
    default a tiny one)."""
    recipe = yaml.safe_load((REPO / "recipes" / "grounding_weak.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "eval_split": "val", "cache": str(tmp_path / "cache"), "build": None})
    recipe["model"].update(TINY_MODEL if model is None else model)
    recipe["train"].update({"max_steps": steps, "batch_size": 16, "eval_every": steps, "checkpoint_every": steps,
                            "progress": False, "tensorboard": False, "threads": 1, "log_every": steps, "warmup": 0})
    path = tmp_path / "grounding_weak.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _referred_masks(root: Path, split: str) -> dict[int, np.ndarray]:
    """Independently of the task: the referred annotation's polygons rasterised by pycocotools, per sentence."""
    from pycocotools import mask as mask_utils

    inst = json.loads((root / "instances.json").read_text())
    size = {im["id"]: (im["height"], im["width"]) for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    out = {}
    for r in pickle.loads((root / "refs(unc).p").read_bytes()):
        if r["split"] == split:
            a = anns[r["ann_id"]]
            h, w = size[a["image_id"]]
            m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))).astype(bool)
            out.update({s["sent_id"]: m for s in r["sentences"]})
    return out


def _hit(point: tuple[int, int], mask: np.ndarray, tolerance: int = 15) -> bool:
    """TorchRay's rule: some mask pixel at squared distance strictly below tolerance ** 2."""
    ys, xs = np.nonzero(mask)
    return bool(((xs - point[0]) ** 2 + (ys - point[1]) ** 2 < tolerance ** 2).any())


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_train_predict_heatmaps_and_pointing_game(tmp_path: Path, scenes: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(_recipe(tmp_path, scenes)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    masks = _referred_masks(scenes, "val")
    assert doc["primary"] == "accuracy" and doc["split"] == "val"
    assert set(doc["baselines"]) == {"centre_point", "random_point", "largest_object", "language_only"}
    assert doc["baselines"]["language_only"]["hits"] + doc["baselines"]["language_only"]["misses"] == len(masks)
    assert doc["model"]["hits"] + doc["model"]["misses"] == len(masks)
    centre = sum(_hit((80, 80), m) for m in masks.values())
    assert doc["baselines"]["centre_point"]["hits"] == centre

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "heatmaps.npz")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = np.load(tmp_path / "heatmaps.npz")
    # the recipe's frozen sprite-encoder map: 160-px frames run at 140 px, four stride-2 layers -> 9 x 9
    assert sorted(pred["sent_id"].tolist()) == sorted(masks) and pred["heatmaps"].shape[1:] == (9, 9)
    assert pred["image_size"].tolist() == [160, 160]
    assert np.allclose(pred["heatmaps"].sum((1, 2)), 1.0, atol=1e-4)  # attention over the map's cells
    hits = sum(_hit(tuple(p), masks[int(s)]) for s, p in zip(pred["sent_id"], pred["points"]))
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["metrics"]
    assert 100 * hits / len(masks) == pytest.approx(best["accuracy"])


def test_training_reads_no_boxes(tmp_path: Path) -> None:
    import torch

    from xmodal.tasks.grounding import ModelConfig
    from xmodal.tasks.grounding_weak import WeakGroundingModel, make_loss, region_channels

    m = ModelConfig(kind="weakly_supervised", **TINY_MODEL)
    model = WeakGroundingModel(m, (32, 32), text_dim=12)
    batch = {"image": torch.rand(3, 3, 32, 32), "text": torch.randn(3, 5, 12), "text_mask": torch.ones(3, 5).bool(),
             "image_index": torch.tensor([0, 1, 2])}  # no box, candidates or target: they are never read
    out = model(batch)
    loss = make_loss(m)(out, batch)
    loss.backward()
    assert out["heatmap"].shape == (3, 2, 2) and torch.isfinite(loss)

    # precomputed region maps and same-image hard negatives: the ref ids, still no box
    m = ModelConfig(kind="weakly_supervised", visual="sprite_encoder", hard_negatives=1.0, dim=16, heads=2)
    model = WeakGroundingModel(m, (32, 32), text_dim=12)
    batch = {"regions": torch.rand(4, region_channels(), 3, 3), "text": torch.randn(4, 5, 12),
             "text_mask": torch.ones(4, 5).bool(), "image_index": torch.tensor([0, 0, 0, 1]),
             "referent": torch.tensor([7, 7, 8, 9])}
    out = model(batch)
    loss = make_loss(m)(out, batch)
    loss.backward()
    assert out["heatmap"].shape == (4, 3, 3) and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_language_only_is_ridge_on_box_centres() -> None:
    """The language-only regressor against scikit-learn's Ridge (alpha 1, the appended constant column as the
    penalised bias, so ``fit_intercept=False``), fitted on the training sentences' normalised box centres, and its
    points scored by the pointing game against hand-made masks."""
    import torch

    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    from xmodal.tasks.grounding import GroundingDataset, GroundingStore, Sentence, pooled_text, text_ridge
    from xmodal.tasks.grounding_weak import baselines, box_centres

    g = torch.Generator().manual_seed(0)
    n, width, height = 12, 200, 100  # 15 px of tolerance: points must fall well apart from the boxes to miss
    boxes = [(float(15 * k), float(17 * (k % 5)), 6.0 + k % 3, 4.0 + k % 2) for k in range(n)]  # x, y, w, h
    boxes[8] = (0.0, 0.0, 6.0, 4.0)  # 8 training sentences of random features: the ridge predicts near (0, 0),
    # so this val sentence is a hit and the three far-off ones misses
    sentences = [Sentence(k, f"s{k}", 0, b, [b], 0, [[b[0], b[1], b[0] + b[2], b[1], b[0] + b[2], b[1] + b[3],
                                                       b[0], b[1] + b[3]]], k) for k, b in enumerate(boxes)]
    mask = torch.ones(n, 4, dtype=torch.bool)
    mask[::3, 2:] = False  # padded word pieces are left out of the mean
    store = GroundingStore(torch.zeros(1, 3, height, width, dtype=torch.uint8), [(width, height)],
                           torch.randn(n, 4, 384, generator=g), mask, sentences, ["train"] * 8 + ["val"] * 4)
    train, val = GroundingDataset(store, "train"), GroundingDataset(store, "val")
    centres = box_centres(train)
    expected_centres = [((x + w / 2) / width, (y + h / 2) / height) for x, y, w, h in boxes[:8]]
    np.testing.assert_allclose(centres.numpy(), expected_centres, rtol=0, atol=1e-12)

    reference = sklearn_linear.Ridge(alpha=1.0, fit_intercept=False, solver="cholesky")
    reference.fit(pooled_text(train).numpy(), centres.numpy())
    ours = text_ridge(train, centres, val)
    np.testing.assert_allclose(ours.numpy(), reference.predict(pooled_text(val).numpy()), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="train_targets"):
        text_ridge(train, centres[:3], val)

    got = baselines(val, train_set=train)["language_only"]
    points = [(int(cx * width), int(cy * height)) for cx, cy in ours.clamp(0, 1).tolist()]
    masks = []
    for x, y, w, h in boxes[8:]:  # the polygon of the box: rasterised by hand, inclusive of its pixels
        m = np.zeros((height, width), dtype=bool)
        m[int(y): int(y + h), int(x): int(x + w)] = True
        masks.append(m)
    hits = sum(_hit((min(px, width - 1), min(py, height - 1)), m) for (px, py), m in zip(points, masks))
    assert got["hits"] == hits == 1 and got["misses"] == 3


def test_referent_contrast_by_hand() -> None:
    """Two expressions of one image naming different objects, one of another image: hand-worked cross-entropy."""
    import math

    import torch

    from xmodal.nn.vl import referent_contrast_loss

    sims = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    attn = torch.tensor([[0.75, 0.25], [0.25, 0.75], [0.5, 0.5]])
    other = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    # row 0: own pooling 0.75, the other's 0.25; at temperature 0.5 logits 1.5 and 0.5; row 1 is symmetric;
    # row 2 has no hard negative and does not count
    expected = -math.log(math.exp(1.5) / (math.exp(1.5) + math.exp(0.5)))
    assert referent_contrast_loss(sims, attn, other, 0.5).item() == pytest.approx(expected, rel=1e-6)
    none = torch.zeros(3, 3, dtype=torch.bool)
    zero = referent_contrast_loss(sims.requires_grad_(), attn, none, 0.5)
    zero.backward()
    assert zero.item() == 0.0 and sims.grad is not None


@pytest.mark.slow  # builds 80 scenes and trains the recipe's model 100 steps
def test_reduced_run_beats_every_baseline(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The recipe's model and losses on 80 scenes (67 val sentences), 100 steps: the pointing game beats the
    centre point, a random point, the box-reading largest object and the language-only point regressor by more
    than 10 points."""
    from xmodal.data.registry import get_builder

    root = Path(get_builder("refcoco-scenes").build(tmp_path_factory.mktemp("refcoco80"), n=80, seed=0))
    recipe = _recipe(tmp_path, root, steps=100, model={})
    doc = yaml.safe_load(recipe.read_text())
    doc["train"].update({"batch_size": 64, "warmup": 10})
    recipe.write_text(yaml.safe_dump(doc))
    res = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["hits"] + metrics["model"]["misses"] == 67
    assert "language_only" in metrics["baselines"]
    best_baseline = max(row["accuracy"] for row in metrics["baselines"].values())
    assert metrics["model"]["accuracy"] > best_baseline + 10, metrics
