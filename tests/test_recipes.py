"""The one recipe parser: every section type-checked, and the recipe defects that used to pass silently or
raise raw tracebacks are ConfigErrors naming the key (and the line, for duplicate keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmodal.config import load_recipe, parse_section
from xmodal.config.recipe import EvalConfig
from xmodal.errors import ConfigError, CorruptFileError
from xmodal.tasks.base import build_task

REPO = Path(__file__).resolve().parents[1]
SYNTH = REPO / "recipes" / "synthetic_pairs.yaml"
DEMO = REPO / "recipes" / "demo_trimodal.yaml"


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_recipes_parse_without_building_anything() -> None:
    assert load_recipe(SYNTH)["task"] == "synthetic_pairs"
    assert load_recipe(DEMO, ["model.embed_dim=32"])["model"]["embed_dim"] == 32


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "task: synthetic_pairs\ntrain: {epochs: 1}\ntrian: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="trian: unknown recipe section"):
        load_recipe(path)


@pytest.mark.parametrize(("override", "key"), [
    ("train.lrr=0.1", r"train\.lrr"),
    ("data.n_trian=10", r"data\.n_trian"),
    ("model.hiden=10", r"model\.hiden"),
    ("new.section.value=[1, 2]", r"--set new\.section\.value"),
    ("eval.primry=x", r"eval\.primry"),
    ("train.epochs.sub=1", r"train\.epochs is a value"),
])
def test_set_keys_that_match_nothing(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_recipe(SYNTH, [override])


def test_set_keys_that_match_are_typed() -> None:
    with pytest.raises(ConfigError, match=r"model\.hidden: expected an integer, got 'wide'"):
        load_recipe(SYNTH, ["model.hidden=wide"])
    with pytest.raises(ConfigError, match=r"data\.options: expected a mapping"):
        load_recipe(DEMO, ["data.options=3"])
    assert load_recipe(DEMO, ["data.options.max_groups=4"])["data"]["options"] == {"max_groups": 4}


def test_duplicate_yaml_keys_name_key_and_line(tmp_path: Path) -> None:
    path = _recipe(tmp_path, "task: synthetic_pairs\ntrain:\n  epochs: 1\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"line 5: duplicate key 'lr' \(first given on line 4\)"):
        load_recipe(path)
    path = _recipe(tmp_path, "task: synthetic_pairs\ntrain: {epochs: 1}\ntask: trimodal_retrieval\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'task'"):
        load_recipe(path)


def test_duplicate_json_keys_in_a_manifest(tmp_path: Path) -> None:
    from xmodal.data.manifest import read_manifest

    (tmp_path / "dataset.json").write_text(json.dumps({"name": "t", "modalities": {"caption": "caption"}}))
    (tmp_path / "manifest.jsonl").write_text('{"id": "a", "split": "train", "caption": "x"}\n'
                                             '{"id": "b", "split": "train", "caption": "y", "caption": "z"}\n')
    with pytest.raises(CorruptFileError, match=r"manifest\.jsonl: line 2: duplicate key 'caption'"):
        read_manifest(tmp_path)
    (tmp_path / "dataset.json").write_text('{"name": "t",\n "modalities": {"caption": "caption"},\n "name": "u"}')
    with pytest.raises(CorruptFileError, match=r"dataset\.json: line 3: duplicate key 'name'"):
        read_manifest(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "t", "modalities": {"caption": "caption"}}))
    (tmp_path / "manifest.jsonl").write_text('["id", "a"]\n')
    with pytest.raises(CorruptFileError, match="line 1: expected a JSON object"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_bytes(b'{"id": "a", "split": "train", "caption": "caf\xe9"}\n')
    with pytest.raises(CorruptFileError, match="not UTF-8"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_fail(value: str) -> None:
    with pytest.raises(ConfigError, match=r"train\.lr: expected a finite number"):
        load_recipe(SYNTH, [f"train.lr={value}"])
    with pytest.raises(ConfigError, match=r"data\.noise: expected a finite number"):
        load_recipe(SYNTH, [f"data.noise={value}"])


@pytest.mark.parametrize(("task", "message"), [
    ("base", "is not a task"),
    ("pipeline", "is not a task"),
    ("../../etc", "neither a task name"),
    ("/etc/passwd", "neither a task name"),
    ("no_such_task", "no task named 'no_such_task'"),
    ("no_such_pkg.task", "no task named 'no_such_pkg.task'"),
    ("3", r"task: (expected the name of a module|'3' is neither)"),
])
def test_bad_task_names(task: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(SYNTH, [f"task={task}"])
    with pytest.raises(ConfigError, match=message):
        build_task({"task": task})


def test_task_may_be_a_users_module() -> None:
    from user_tasks import my_task

    cfg = load_recipe(SYNTH, ["task=user_tasks.my_task", "data={}", "model={}"])
    bundle = build_task(cfg)
    assert my_task.BUILT and len(bundle.train_set) == 64
    with pytest.raises(ConfigError, match="no task named .user_tasks.no_such."):
        build_task({"task": "user_tasks.no_such"})


def test_non_utf8_recipe(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("task: synthetic_pairs\n# r\xe9sum\xe9\ntrain: {epochs: 1}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: line 2: not UTF-8"):
        load_recipe(path)


@pytest.mark.parametrize(("override", "key"), [
    ("model.hidden=-3", r"model\.hidden: must be >= 1"),
    ("model.hidden=2.5", r"model\.hidden: expected an integer"),
    ("model.dropout=1.5", r"model\.dropout"),
])
def test_bad_model_values_fail_at_parse_time(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_recipe(SYNTH, [override])


@pytest.mark.parametrize(("override", "key"), [
    ("model.image_channels=[32, 0]", r"model\.image_channels: must be >= 1"),
    ("model.embed_dim=wide", r"model\.embed_dim: expected an integer"),
    ("model.audio_kernel=4", r"model\.encoders\.audio"),  # an even kernel cannot keep positions aligned
])
def test_bad_demo_model_values_fail_at_parse_time(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_recipe(DEMO, [override])


def test_parse_section_types() -> None:
    assert parse_section(EvalConfig, {"primary": "accuracy"}, "eval").primary == "accuracy"
    with pytest.raises(ConfigError, match=r"eval\.batch_size: expected an integer"):
        parse_section(EvalConfig, {"batch_size": True}, "eval")
    with pytest.raises(ConfigError, match=r"eval\.primary: expected a string or null"):
        parse_section(EvalConfig, {"primary": 3}, "eval")
    with pytest.raises(ConfigError, match="eval: expected a mapping"):
        parse_section(EvalConfig, [1], "eval")


def test_cli_exits_2_on_a_bad_recipe(tmp_path: Path) -> None:
    from xmodal.cli import main

    path = _recipe(tmp_path, "task: synthetic_pairs\ntrain: {epochs: 1, lr: .nan}\n")
    import sys

    argv = sys.argv
    sys.argv = ["xmodal", "train", str(path)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    assert exit_info.value.code == 2
    assert CliRunner  # the CliRunner-based tests cover the rest of the CLI
