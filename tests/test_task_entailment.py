"""The entailment task end to end on SNLI-VE-format scenes: build -> xmodal train -> xmodal predict -> xmodal eval
entailment, the majority baseline recomputed from the raw jsonl, and bad input named."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"channels": [8, 16, 16], "stem_stride": 4, "dim": 16, "heads": 2}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    root = tmp_path_factory.mktemp("snli")
    return Path(get_builder("snli-ve-scenes").build(root, n=24, seed=3))


def _recipe(tmp_path: Path, root: Path, steps: int = 4) -> Path:
    """The committed recipe in its reduced CI form: tiny scenes, a tiny model, a few steps."""
    recipe = yaml.safe_load((REPO / "recipes" / "entailment.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "cache": str(tmp_path / "cache"), "build": None})
    recipe["model"].update(TINY_MODEL)
    recipe["train"].update({"max_steps": steps, "batch_size": 16, "lr": 1e-3, "eval_every": steps, "checkpoint_every": steps,
                            "progress": False,
                            "tensorboard": False, "threads": 1, "log_every": steps, "warmup": 0})
    path = tmp_path / "entailment.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _printed(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path, scenes: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(_recipe(tmp_path, scenes)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    heldout = _raw(scenes / "snli_ve_test.jsonl")
    train = _raw(scenes / "snli_ve_train.jsonl")
    assert doc["primary"] == "accuracy" and doc["split"] == "snli_ve_test" and doc["n"] == len(heldout)
    counts = Counter(r["gold_label"] for r in train)  # balanced labels tie: the first in the official order wins
    majority = max(("entailment", "neutral", "contradiction"), key=counts.__getitem__)  # max keeps the first
    assert counts[majority] == max(counts.values())
    expected = 100 * sum(r["gold_label"] == majority for r in heldout) / len(heldout)
    assert doc["baselines"]["majority"]["accuracy"] == pytest.approx(expected)
    assert doc["baselines"]["chance"]["accuracy"] == pytest.approx(100 / 3)
    assert set(doc["baselines"]) == {"chance", "majority", "hypothesis_only"}

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert set(pred) == {r["pairID"] for r in heldout}
    args = ["eval", "entailment", "--annotations", str(scenes / "snli_ve_test.jsonl")]
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["metrics"]
    assert _printed(res.stdout)["accuracy"] == pytest.approx(best["accuracy"])

    (tmp_path / "gt.json").write_text(json.dumps({r["pairID"]: r["gold_label"] for r in heldout}))
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "gt.json")])
    assert _printed(res.stdout) == {"accuracy": 100.0}


def test_missing_files_are_named(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    with pytest.raises(DataError, match="snli_ve_train.jsonl"):
        build_task({"task": "entailment", "data": {"root": str(tmp_path / "nothing")}})


@pytest.mark.slow  # 80 scenes and 60 steps
def test_reduced_run_beats_every_baseline(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("snli-ve-scenes").build(tmp_path_factory.mktemp("snli80"), n=80, seed=0))
    recipe = _recipe(tmp_path, root, steps=60)
    doc = yaml.safe_load(recipe.read_text())
    doc["model"].update({"channels": [8, 16, 32], "dim": 32})
    doc["train"].update({"warmup": 6, "eval_every": 0})
    recipe.write_text(yaml.safe_dump(doc), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    best_baseline = max(row["accuracy"] for row in metrics["baselines"].values())
    assert metrics["model"]["accuracy"] > best_baseline + 10, metrics
