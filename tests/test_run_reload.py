"""A trained run directory reloads as it was saved: ``xmodal predict`` uses the run's own label map
(``labels.json``), so a data folder that lost a class gives the same predictions for the samples that remain
(a label map or category list rebuilt from the data would shift every index), a label the run never saw is a typed error,
and a data folder that is gone is a typed error naming it. Data: Fisher's iris measurements (scikit-learn)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import DataError, XmodalError

runner = CliRunner()
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def _write_table(path: Path, keep: callable = lambda row: True) -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *COLUMNS, "petal", "species", "split"])
        for i, (x, y) in enumerate(zip(iris.data, iris.target)):
            petal = "compact" if x[2] < 2.5 else "medium" if x[2] < 5 else "tall"  # a categorical column
            row = [f"iris{i:03d}", *x, petal, iris.target_names[y], "test" if i % 5 == 0 else "train"]
            if keep(row):
                w.writerow(row)


def _predictions(run: Path, out: Path) -> dict[str, dict]:
    res = runner.invoke(app, ["predict", str(run), "--out", str(out), "--checkpoint", "last"])
    assert res.exit_code == 0, (res.output, res.exception)
    return {r["id"]: r for r in json.loads(out.read_text())}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reload")
    _write_table(root / "iris.csv")
    recipe = {"task": "multimodal",
              "data": {"table": str(root / "iris.csv"), "fields": {**{c: "numeric" for c in COLUMNS}, "petal": "categorical"},
                       "target": "species", "kind": "classification"},
              "model": {"fusion": {"kind": "concat"}, "head": {"kind": "classifier"}},
              "train": {"max_steps": 40, "batch_size": 24, "lr": 0.02, "progress": False, "threads": 1,
                        "tensorboard": False}}
    (root / "r.yaml").write_text(yaml.safe_dump(recipe))
    res = runner.invoke(app, ["train", str(root / "r.yaml"), "--out", str(root / "run")])
    assert res.exit_code == 0, (res.output, res.exception)
    return root, root / "run"


def test_run_directory_keeps_its_label_map(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, run = trained
    assert json.loads((run / "labels.json").read_text()) == ["setosa", "versicolor", "virginica"]
    assert "labels" in json.loads((run / "artifacts.json").read_text())
    before = _predictions(run, tmp_path / "before.json")
    assert len(before) == 30
    names = ["setosa", "versicolor", "virginica"]
    right = sum(r["label"] == names[int(k[4:]) // 50] for k, r in before.items())
    assert right >= 24  # the model learned (the majority class is 10 of 30)

    assert json.loads((run / "categories.json").read_text()) == {"petal": ["compact", "medium", "tall"]}
    # the data folder loses every setosa row: rebuilt, the labels would be [versicolor, virginica] and the
    # petal categories [medium, tall]
    _write_table(root / "iris.csv", keep=lambda row: row[6] != "setosa")
    after = _predictions(run, tmp_path / "after.json")
    assert set(after) == {k for k, r in before.items() if int(k[4:]) >= 50}
    for key, record in after.items():
        assert record == before[key]  # same label and the same probabilities for all three classes

    # a class the run never saw: a typed error naming the saved label map (the console script exits 2)
    _write_table(root / "iris.csv", keep=lambda row: True)
    text = (root / "iris.csv").read_text().replace("virginica", "sanguinea")
    (root / "iris.csv").write_text(text)
    res = runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "x.json"), "--checkpoint", "last"])
    assert isinstance(res.exception, DataError), res.output
    assert "sanguinea" in str(res.exception) and "labels.json" in str(res.exception)

    # the data gone: a typed error naming the table
    (root / "iris.csv").unlink()
    res = runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "y.json"), "--checkpoint", "last"])
    assert isinstance(res.exception, XmodalError) and "iris.csv" in str(res.exception)


def test_changed_artifacts_of_a_task_without_saved_reload_are_an_error(trained: tuple[Path, Path]) -> None:
    from xmodal.config.recipe import load_recipe
    from xmodal.tasks.base import build_task

    root, run = trained
    _write_table(root / "iris.csv")
    recipe = load_recipe(run / "recipe.yaml")
    recipe["task"] = "user_tasks.plain_multimodal"  # a build(cfg) that knows nothing of saved artifacts
    assert build_task(recipe, {"labels": ["setosa", "versicolor", "virginica"]}).artifacts["labels"][0] == "setosa"
    with pytest.raises(DataError, match="labels.*data folder changed"):
        build_task(recipe, {"labels": ["versicolor", "virginica", "setosa"]})
