"""Recipes: overrides, validation of the train section, typed errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.errors import ConfigError
from xmodal.tasks.base import build_task
from xmodal.train.config import apply_overrides, load_recipe, parse_train_config

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "synthetic_pairs.yaml"


def test_recipe_loads_and_overrides_are_yaml_typed() -> None:
    cfg = load_recipe(RECIPE, ["train.lr=3e-4", "train.grad_clip=null", "model.hidden=16", "train.betas=[0.8, 0.9]"])
    tc = parse_train_config(cfg["train"])
    assert tc.lr == 3e-4 and isinstance(tc.lr, float)
    assert tc.grad_clip is None
    assert cfg["model"]["hidden"] == 16
    assert tc.betas == [0.8, 0.9]
    assert tc.micro_batch_size == tc.batch_size // tc.grad_accum


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"epochs": 1, "lrr": 0.1}, "train.lrr"),  # unknown key
        ({"epochs": 1, "batch_size": "big"}, "train.batch_size"),  # wrong type
        ({"epochs": 1, "batch_size": 0}, "train.batch_size"),
        ({"epochs": 1, "precision": "fp8"}, "train.precision"),
        ({"epochs": 1, "strategy": "zero3"}, "train.strategy"),
        ({"epochs": 1, "batch_size": 30, "grad_accum": 4}, "train.grad_accum"),
        ({"epochs": 1, "lr": -1}, "train.lr"),
        ({"epochs": True}, "train.epochs"),  # a bool is not an int here
        ({}, "train.epochs"),  # neither epochs nor max_steps
    ],
)
def test_bad_train_values_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_train_config(section)


def test_bad_task_sections_name_the_key() -> None:
    cfg = load_recipe(RECIPE)
    with pytest.raises(ConfigError, match=r"data\.n_trian"):
        build_task(apply_overrides(cfg, ["data.n_trian=10"]))
    with pytest.raises(ConfigError, match=r"model\.hidden"):
        build_task(apply_overrides(cfg, ["model.hidden=wide"]))
    with pytest.raises(ConfigError, match="task"):
        build_task(apply_overrides(cfg, ["task=no_such_task"]))


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.lr"):
        apply_overrides({"train": {"lr": 1}}, ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(REPO / "recipes" / "missing.yaml")


def test_cli_reports_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xmodal", "train", str(RECIPE), "--set", "train.warmpu=5", "--out", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    assert "ConfigError" in proc.stderr and "train.warmpu" in proc.stderr
