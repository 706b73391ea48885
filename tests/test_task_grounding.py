"""The grounding task end to end on RefCOCO-format scenes: build -> xmodal train -> xmodal predict -> xmodal eval
grounding, the baselines recomputed by hand from the official files, a reduced run of the candidate-ranking
model beating every baseline, the TransVG regressor as a selectable kind, and bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"channels": [8, 16, 16], "stem_stride": 4, "dim": 32, "depth": 1, "heads": 2}
REDUCED_STEPS = 100


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    root = tmp_path_factory.mktemp("refcoco")
    return Path(get_builder("refcoco-scenes").build(root, n=24, seed=3))


def _recipe(tmp_path: Path, root: Path, steps: int = 4, model: dict | None = None) -> Path:
    """The committed recipe in its reduced CI form: tiny scenes, a tiny model, a few steps."""
    recipe = yaml.safe_load((REPO / "recipes" / "grounding.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "eval_split": "val", "cache": str(tmp_path / "cache"), "build": None})
    recipe["model"].update(model or TINY_MODEL)
    recipe["train"].update({"max_steps": steps, "batch_size": 16, "lr": 1e-3, "eval_every": steps, "checkpoint_every": steps,
                            "progress": False,
                            "tensorboard": False, "threads": 1, "log_every": steps, "warmup": 0})
    path = tmp_path / "grounding.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _ground_truth(root: Path, split: str) -> dict[int, list[float]]:
    """Independently of the task: the refer toolkit's selection (the split's name in the ref's split) and the
    referred annotation's COCO bbox, read from the raw files."""
    import pickle

    boxes = {a["id"]: a["bbox"] for a in json.loads((root / "instances.json").read_text())["annotations"]}
    refs = pickle.loads((root / "refs(unc).p").read_bytes())
    return {s["sent_id"]: boxes[r["ann_id"]] for r in refs if r["split"] == split for s in r["sentences"]}


def _printed(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path, scenes: Path) -> None:
    runner = CliRunner()
    recipe = _recipe(tmp_path, scenes)
    res = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    truth = _ground_truth(scenes, "val")
    assert doc["primary"] == "accuracy" and doc["split"] == "val" and doc["model"]["n"] == len(truth)
    assert set(doc["baselines"]) == {"chance", "largest_object", "centre_box", "majority", "language_only"}

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert set(map(int, pred)) == set(truth) and all(len(b) == 4 for b in pred.values())
    args = ["eval", "grounding", "--refs", str(scenes / "refs(unc).p"), "--instances", str(scenes / "instances.json"),
            "--split", "val"]
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output
    scored = _printed(res.stdout)
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["metrics"]
    assert scored["accuracy"] == pytest.approx(best["accuracy"], abs=1e-9)  # predictions rounded to 1e-3 px

    (tmp_path / "gt.json").write_text(json.dumps({str(k): v for k, v in truth.items()}))
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "gt.json")])
    assert _printed(res.stdout) == {"accuracy": 100.0, "n": len(truth)}


@pytest.mark.slow  # MiniLM token states of every sentence
def test_baselines_by_hand(tmp_path: Path, scenes: Path) -> None:
    from xmodal.config import load_recipe
    from xmodal.tasks.base import build_task

    bundle = build_task(load_recipe(_recipe(tmp_path, scenes)))
    table = bundle.baselines(bundle.val_set)
    truth = _ground_truth(scenes, "val")
    inst = json.loads((scenes / "instances.json").read_text())
    image_of = {a["id"]: a["image_id"] for a in inst["annotations"]}
    import pickle

    refs = pickle.loads((scenes / "refs(unc).p").read_bytes())
    ann_of = {s["sent_id"]: r["ann_id"] for r in refs for s in r["sentences"]}

    def iou(a: list[float], b: list[float]) -> float:  # MAttNet's computeIoU, restated for integer-free boxes
        x1, y1 = max(a[0], b[0]), max(a[1], b[1])
        x2, y2 = min(a[0] + a[2] - 1, b[0] + b[2] - 1), min(a[1] + a[3] - 1, b[1] + b[3] - 1)
        inter = (x2 - x1 + 1) * (y2 - y1 + 1) if x1 < x2 and y1 < y2 else 0
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    hits = 0
    chance = 0.0
    for sid, gt in truth.items():
        objects = [a["bbox"] for a in inst["annotations"] if a["image_id"] == image_of[ann_of[sid]]]
        largest = max(objects, key=lambda b: b[2] * b[3])
        hits += iou(largest, gt) >= 0.5
        chance += sum(iou(o, gt) >= 0.5 for o in objects) / len(objects)
    assert table["largest_object"]["accuracy"] == pytest.approx(100 * hits / len(truth))
    assert table["chance"]["accuracy"] == pytest.approx(100 * chance / len(truth))
    assert 0 < table["chance"]["accuracy"] < 50  # crowded frames: several candidates per expression


def test_missing_files_are_named(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    with pytest.raises(DataError, match="refs\\(unc\\).p"):
        build_task({"task": "grounding", "data": {"root": str(tmp_path / "nothing")}})


@pytest.mark.slow  # MiniLM token states and a forward pass
def test_transvg_kind_regresses_boxes(tmp_path: Path, scenes: Path) -> None:
    from xmodal.config import load_recipe
    from xmodal.tasks.base import build_task
    from xmodal.tasks.grounding import GroundingModel

    bundle = build_task(load_recipe(_recipe(tmp_path, scenes, model={**TINY_MODEL, "kind": "transvg"})))
    assert isinstance(bundle.model, GroundingModel)
    batch = bundle.collate([bundle.train_set[k] for k in range(4)])
    out = bundle.model(batch)
    assert out["box"].shape == (4, 4) and torch.isfinite(bundle.loss(out, batch))


def test_unknown_kind_is_a_config_error(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    with pytest.raises(ConfigError, match="model.kind"):
        build_task({"task": "grounding", "data": {"root": str(tmp_path)}, "model": {"kind": "detr"}})


@pytest.mark.slow  # the recipe's 200 scenes and model, a third of its steps
def test_reduced_run_beats_every_baseline(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from xmodal.data.registry import get_builder

    recipe = yaml.safe_load((REPO / "recipes" / "grounding.yaml").read_text(encoding="utf-8"))
    build = {k: v for k, v in recipe["data"]["build"].items() if k != "workers"}
    root = Path(get_builder("refcoco-scenes").build(tmp_path_factory.mktemp("refcoco200"), **build, workers=2))
    path = _recipe(tmp_path, root, steps=REDUCED_STEPS, model=recipe["model"])
    doc = yaml.safe_load(path.read_text())
    doc["train"].update({"warmup": recipe["train"]["warmup"], "eval_every": 0, "batch_size": recipe["train"]["batch_size"]})
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["n"] >= 100  # enough held-out sentences for a 10-point margin to mean something
    best_baseline = max(row["accuracy"] for row in metrics["baselines"].values())
    assert metrics["model"]["accuracy"] > best_baseline + 10, metrics


def test_ref_on_another_image_is_named(tmp_path: Path, scenes: Path) -> None:
    import pickle
    import shutil

    from xmodal.tasks.base import build_task

    inst = json.loads((scenes / "instances.json").read_text())
    refs = pickle.loads((scenes / "refs(unc).p").read_bytes())
    moved = next(a for a in inst["annotations"] if a["id"] == refs[0]["ann_id"])
    moved["image_id"] = next(im["id"] for im in inst["images"] if im["id"] != refs[0]["image_id"])
    (tmp_path / "instances.json").write_text(json.dumps(inst))
    shutil.copy(scenes / "refs(unc).p", tmp_path / "refs(unc).p")
    with pytest.raises(DataError, match=f"annotation {refs[0]['ann_id']} belongs to image"):
        build_task({"task": "grounding", "data": {"root": str(tmp_path), "cache": str(tmp_path / "cache")}})
