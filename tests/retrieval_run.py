"""Shared steps of the retrieval recipe tests: a committed recipe in reduced form, trained, predicted and scored
through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from cli_run import eval_output, first_json
from typer.testing import CliRunner

from xmodal.cli import app

REPO = Path(__file__).resolve().parents[1]


def reduced_recipe(tmp_path: Path, name: str, root: Path, model: dict[str, Any], steps: int,
                   data: dict[str, Any] | None = None, lr: float = 3e-3) -> Path:
    """``recipes/<name>.yaml`` on the scenes at ``root`` with a small model and ``steps`` steps, one thread."""
    recipe = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "cache": str(tmp_path / "cache"), "build": None, **(data or {})})
    recipe["model"].update(model)
    recipe["train"].update({"max_steps": steps, "batch_size": 8, "lr": lr, "warmup": 5, "eval_every": 0,
                            "checkpoint_every": steps, "log_every": steps, "progress": False, "tensorboard": False,
                            "threads": 1})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def train_predict_eval(tmp_path: Path, recipe: Path, annotations: Path, protocol: str) -> tuple[dict, dict]:
    """``metrics.json`` of ``xmodal train`` and what ``xmodal eval retrieval`` prints for ``xmodal predict``'s
    ``sim.npy``."""
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "sim.npy")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert np.load(tmp_path / "sim.npy").dtype == np.float32
    scores = first_json(eval_output("retrieval", "--annotations", str(annotations), "--similarity",
                                    str(tmp_path / "sim.npy"), "--protocol", protocol))
    return metrics, scores


def check_run(metrics: dict, printed: dict, directions: tuple[str, str], n_items: int) -> None:
    """The run reports the protocol's metrics for the model and every baseline (random, the trained bag of words,
    the probe on the model's items), and ``sim.npy`` scored by the CLI
    gives the model's numbers exactly."""
    keys = {f"{d}_{k}" for d in directions for k in ("R@1", "R@5", "R@10", "MedR", "MeanR")}
    assert metrics["primary"] == "mean_R@1"
    assert set(metrics["baselines"]) == {"random", "bag_of_words", "bag_of_words_on_model_items"}
    for row in (metrics["model"], *metrics["baselines"].values()):
        assert keys <= set(row)
        assert row["mean_R@1"] == (row[f"{directions[0]}_R@1"] + row[f"{directions[1]}_R@1"]) / 2
        assert all(0 <= row[f"{d}_R@{k}"] <= 100 for d in directions for k in (1, 5, 10))
        assert 1 <= row[f"{directions[0]}_MeanR"] <= n_items  # text to item: one of n_items
        assert 1 <= row[f"{directions[1]}_MeanR"] <= 5 * n_items  # item to text: the best of its captions
    for key in keys:
        assert abs(printed[key] - metrics["model"][key]) <= 1e-9, key  # the same matrix, scored the same way
