"""The generic multimodal task from a recipe alone: a table of real images (scikit-learn's handwritten digits)
with a numeric and a categorical column, trained through ``xmodal train`` and predicted with ``xmodal predict``;
the model beats the majority baseline on held-out rows. Bad tables give typed errors naming the column."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.config import load_recipe
from xmodal.errors import ConfigError, DataError


def _digits_table(root: Path, n_per_class: int = 40) -> Path:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    rows = []
    for label in (0, 1, 7):
        idx = np.flatnonzero(digits.target == label)[:n_per_class]
        for i in idx:
            name = f"img/digit_{i}.png"
            (root / "img").mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").resize((16, 16), Image.NEAREST).save(root / name)
            rows.append({"id": f"d{i}", "picture": name, "noise": f"{rng.normal():.4f}",
                         "colour": rng.choice(["red", "blue"]), "digit": f"n{label}"})
    path = root / "digits.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _recipe(tmp_path: Path, table: Path) -> Path:
    recipe = {
        "task": "multimodal",
        "data": {"table": str(table), "fields": {"picture": "image", "noise": "numeric", "colour": "categorical"},
                 "target": "digit", "val_fraction": 0.25, "image_size": [16, 16]},
        "model": {"encoders": {"picture": {"width": 32}, "noise": {"width": 8}, "colour": {"width": 8}},
                  "fusion": {"kind": "concat"}, "head": {"kind": "classifier"}},
        "train": {"epochs": 6, "batch_size": 16, "lr": 3e-3, "eval_every": 12, "progress": False,
                  "tensorboard": False, "threads": 1},
    }
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_table_task_trains_beats_majority_and_predicts(tmp_path: Path) -> None:
    table = _digits_table(tmp_path / "data")
    recipe = _recipe(tmp_path, table)
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["primary"] == "accuracy" and doc["split"] == "val" and doc["n"] == 30  # 10 of each class
    assert doc["baselines"]["majority"]["accuracy"] == pytest.approx(1 / 3)
    assert doc["model"]["accuracy"] >= 0.8  # three well-separated digits; the noise columns carry nothing
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["n0", "n1", "n7"]
    assert json.loads((tmp_path / "run" / "categories.json").read_text()) == {"colour": ["blue", "red"]}

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.csv")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = list(csv.DictReader(open(tmp_path / "pred.csv", encoding="utf-8")))  # noqa: SIM115
    truth = {r["id"]: r["digit"] for r in csv.DictReader(open(table, encoding="utf-8"))}  # noqa: SIM115
    assert len(pred) == 30 and {"id", "label", "p_n0", "p_n1", "p_n7"} == set(pred[0])
    accuracy = np.mean([truth[r["id"]] == r["label"] for r in pred])
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert accuracy == pytest.approx(best["metrics"]["accuracy"])  # predict reloads the best checkpoint


def test_bad_tables_name_the_column(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    table = _digits_table(tmp_path / "data", n_per_class=3)
    cfg = load_recipe(_recipe(tmp_path, table))
    with pytest.raises(ConfigError, match="data.fields.pixels: no column 'pixels'"):
        build_task({**cfg, "data": {**cfg["data"], "fields": {"pixels": "image"}}, "model": {}})
    with pytest.raises(ConfigError, match="data.target: no column or field 'class'"):
        build_task({**cfg, "data": {**cfg["data"], "target": "class"}})
    with pytest.raises(ConfigError, match="data.target: 'colour' has"):
        rows = list(csv.DictReader(open(table, encoding="utf-8")))  # noqa: SIM115
        for r in rows:
            r["colour"] = "red"
        with open(table, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        build_task({**cfg, "data": {**cfg["data"], "target": "colour",
                                    "fields": {"picture": "image", "noise": "numeric"}},
                    "model": {}})
    rows[0]["noise"] = "abc"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError, match="field 'noise': not a number"):
        build_task(cfg)
    with pytest.raises(ConfigError, match="data.manifest / data.table"):
        load_recipe(_recipe(tmp_path, table), ["data.table=null"])


def test_manifest_source_with_text_and_a_contrastive_table(tmp_path: Path) -> None:
    from xmodal.data.manifest import write_manifest
    from xmodal.tasks.base import build_task
    from xmodal.train.loop import train

    table = _digits_table(tmp_path / "data", n_per_class=6)
    rows = list(csv.DictReader(open(table, encoding="utf-8")))  # noqa: SIM115
    words = {"n0": "a round zero", "n1": "a thin one", "n7": "a seven with a bar"}
    manifest_rows = [{"id": r["id"], "split": "test" if i % 3 == 0 else "train", "image": r["picture"],
                      "caption": words[r["digit"]], "label": r["digit"]} for i, r in enumerate(rows)]
    root = write_manifest(tmp_path / "data", {"name": "digits", "modalities": {"image": "image",
                                                                                "caption": "caption"}},
                          manifest_rows)
    cfg = {"task": "multimodal", "data": {"manifest": str(root), "image_size": [16, 16]},
           "model": {"encoders": {"image": {"width": 16}, "caption": {"width": 16, "depth": 1}},
                     "head": {"kind": "classifier"}}}
    bundle = build_task(cfg)
    sample = bundle.train_set[0]
    assert sample["caption"].dtype == torch.int64 and sample["caption"][0] == 101  # [CLS] of the word pieces
    assert sample["image"].shape == (3, 16, 16) and bundle.split == "test"
    batch = bundle.collate([bundle.train_set[i] for i in range(4)])
    assert batch["caption_mask"].shape == batch["caption"].shape  # word pieces padded with a mask
    assert set(bundle.model(batch)) == {"logits", "embedding"}

    cfg = {"task": "multimodal", "data": {"table": str(table), "fields": {"picture": "image", "noise": "numeric"},
                                          "kind": "contrastive", "image_size": [16, 16]},
           "model": {"encoders": {"picture": {"width": 16}, "noise": {"width": 8}}, "embed_dim": 8},
           "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False}}
    bundle = build_task(cfg)
    assert bundle.coupled_loss and bundle.primary == "mean/R@1"
    train(bundle, cfg, out_dir=tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"picture->noise/R@1", "noise->picture/R@1", "mean/R@1"} <= set(doc["model"])
    assert set(doc["baselines"]) == {"random"}


def test_multilabel_table(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task
    from xmodal.train.loop import train

    table = _digits_table(tmp_path / "data", n_per_class=8)
    rows = list(csv.DictReader(open(table, encoding="utf-8")))  # noqa: SIM115
    sets = {"n0": "zero|round", "n1": "one|thin", "n7": "seven|thin"}
    for r in rows:
        r["tags"] = sets[r["digit"]]
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cfg = {"task": "multimodal", "data": {"table": str(table), "fields": {"picture": "image"}, "target": "tags",
                                          "kind": "multilabel", "image_size": [16, 16]},
           "model": {"encoders": {"picture": {"width": 16}}}, "eval": {"primary": "mean_average_precision"},
           "train": {"epochs": 2, "batch_size": 6, "progress": False, "tensorboard": False}}
    recipe = tmp_path / "tags.yaml"
    recipe.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert load_recipe(recipe) == cfg  # the recipe parser accepts the multilabel kind and its primary metric
    bundle = build_task(cfg)
    assert bundle.model.head.head.net[-1].out_features == 5  # one, round, seven, thin, zero
    assert bundle.train_set[0]["tags"].tolist() in ([0, 1, 0, 0, 1], [1, 0, 0, 1, 0], [0, 0, 1, 1, 0])
    train(bundle, cfg, out_dir=tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["primary"] == "mean_average_precision" and set(doc["baselines"]) == {"prior"}
    assert set(doc["model"]) == {"mean_average_precision", "micro_f1"}
    out = bundle.predict(bundle.model, bundle.val_set, tmp_path / "p.json")
    assert {"id", "labels", "p_thin"} <= set(json.loads(out.read_text())[0])
