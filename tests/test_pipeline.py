"""The generic task pipeline and the trainer's evaluation: metrics.json's schema, the best checkpoint kept by the
primary metric, a self-contained run directory, ``xmodal predict`` reloading what training produced, and the
supervised metrics, baselines and prediction writers on hand-worked cases."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.tasks import pipeline, synthetic_pairs
from xmodal.train import checkpoint as ckpt
from xmodal.train.loop import train

REPO = Path(__file__).resolve().parents[1]
SMALL = {"task": "synthetic_pairs", "data": {"n_train": 256, "n_val": 48}, "model": {"hidden": 16, "embed_dim": 8}}
TRAIN = {"epochs": 2, "batch_size": 32, "progress": False, "tensorboard": False, "threads": 1}


def test_metrics_json_schema_best_checkpoint_and_run_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = {**SMALL, "train": {**TRAIN, "epochs": 4, "lr": 3e-3, "eval_every": 8}}
    result = train(synthetic_pairs.build(cfg), cfg, out_dir=tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert set(doc) == {"primary", "model", "baselines", "split", "n"}
    assert doc["primary"] == "mean/R@1" and doc["split"] == "val" and doc["n"] == 48
    assert doc["model"] == result.metrics and "a2b/R@1" in doc["model"]
    assert set(doc["baselines"]) == {"random"}
    # chance for 48 items: R@1 = 100/48 % in expectation; the trained model is far above it
    assert doc["baselines"]["random"]["a2b/R@1"] == pytest.approx(100 / 48, rel=0.5)
    assert doc["model"]["mean/R@1"] > 4 * doc["baselines"]["random"]["mean/R@1"]
    best = json.loads((tmp_path / "best" / "best.json").read_text())
    evaluated = [r for r in csv.DictReader(open(tmp_path / "log.csv"))]  # noqa: SIM115
    assert evaluated  # the loss log is there
    assert best["primary"] == "mean/R@1" and best["step"] in (8, 16, 24, 32)
    state = json.loads((tmp_path / "best" / ckpt.STATE).read_text())
    assert state["step"] == best["step"]  # best/ holds that step's complete checkpoint
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text()) == cfg


class ScriptedEvaluation:
    """An evaluation whose primary metric follows a script, to check which step the trainer keeps."""

    def __init__(self, values: list[float]) -> None:
        self.values, self.calls = list(values), 0

    def __call__(self, model, dataset) -> dict[str, float]:
        value = self.values[self.calls]
        self.calls += 1
        return {"score": value}


@pytest.mark.parametrize(("higher", "expected_step"), [(True, 4), (False, 6)])
def test_best_checkpoint_follows_the_primary_metric(tmp_path: Path, higher: bool, expected_step: int) -> None:
    torch.manual_seed(0)
    cfg = {**SMALL, "train": {**TRAIN, "epochs": 1, "eval_every": 2}}  # 8 steps: evaluations at 2, 4, 6, 8
    bundle = synthetic_pairs.build(cfg)
    bundle.evaluate = ScriptedEvaluation([0.3, 0.9, 0.1, 0.5])
    bundle.primary, bundle.higher_is_better = "score", higher
    train(bundle, cfg, out_dir=tmp_path)
    assert bundle.evaluate.calls == 4
    assert json.loads((tmp_path / "best" / "best.json").read_text())["step"] == expected_step
    assert len(list(tmp_path.glob("best-*"))) == 1  # the superseded best is removed
    weights = load_file(str(tmp_path / "best" / ckpt.TENSORS))
    kept = load_file(str(ckpt.step_dir(tmp_path / "checkpoints", expected_step) / ckpt.TENSORS)) \
        if ckpt.step_dir(tmp_path / "checkpoints", expected_step).exists() else weights
    assert all(torch.equal(weights[k], kept[k]) for k in weights)


def test_unknown_primary_metric_is_named(tmp_path: Path) -> None:
    from xmodal.errors import ConfigError

    cfg = {**SMALL, "train": {**TRAIN, "epochs": 1}, "eval": {"primary": "R@1"}}
    with pytest.raises(ConfigError, match="eval.primary: 'R@1' is not a metric"):
        train(synthetic_pairs.build(cfg), cfg, out_dir=tmp_path)


def test_predict_cli_reloads_the_trained_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = {**SMALL, "train": {**TRAIN, "eval_every": 8}}
    bundle = synthetic_pairs.build(cfg)
    train(bundle, cfg, out_dir=tmp_path / "run")
    expected = pipeline.embed_all(bundle.model, bundle.val_set, bundle.collate, ["a", "b"])  # the model in memory

    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--checkpoint", "last", "--out",
                              str(tmp_path / "pred.safetensors")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    got = load_file(str(tmp_path / "pred.safetensors"))
    for m in ("a", "b"):
        torch.testing.assert_close(got[m], expected[m], rtol=0, atol=0)
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "pred.json").read_text())
    assert len(doc["ids"]) == 48 and len(doc["top10"]["a->b"][0]) == 10
    best_step = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["step"]
    assert best_step in (8, 16)
    for bad, message in ((["--checkpoint", "nowhere"], "not a checkpoint directory"),
                         (["--split", "test"], "--split")):
        res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "x.json"), *bad])
        assert res.exit_code != 0 and message in str(res.exception)
    res = runner.invoke(app, ["predict", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert "not a run directory" in str(res.exception)
    # a recipe with a checkpoint path rebuilds the task from the recipe and loads that checkpoint
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((tmp_path / "run" / "recipe.yaml").read_text())
    step = ckpt.find_latest(tmp_path / "run" / "checkpoints")
    res = runner.invoke(app, ["predict", str(recipe), "--checkpoint", str(step), "--out", str(tmp_path / "r.safetensors")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert torch.equal(load_file(str(tmp_path / "r.safetensors"))["a"], expected["a"])
    res = runner.invoke(app, ["predict", str(recipe), "--out", str(tmp_path / "r.json")])
    assert "needs a run directory" in str(res.exception)


def test_train_and_predict_through_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    sets = ["data.n_train=128", "data.n_val=32", "model.hidden=8", "model.embed_dim=4", "train.epochs=1",
            "train.eval_every=2", "train.progress=false", "train.tensorboard=false", "train.batch_size=32"]
    args = ["train", str(REPO / "recipes" / "synthetic_pairs.yaml"), "--out", str(tmp_path / "run")]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    run = tmp_path / "run"
    assert {"metrics.json", "recipe.yaml", "best", "checkpoints"} <= {p.name for p in run.iterdir()}
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe["train"]["eval_every"] == 2 and recipe["data"]["n_train"] == 128  # resolved after --set
    res = runner.invoke(app, ["predict", str(run), "--out", str(tmp_path / "p.safetensors")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert load_file(str(tmp_path / "p.safetensors"))["a"].shape == (32, 4)


# ------------------------------------------------------------------------------ supervised, hand-worked
def test_classification_metrics_hand_worked() -> None:
    # labels 0 0 1 1, predictions 0 1 1 1: accuracy 3/4; F1 of class 0 = 2/3 (P 1, R 1/2), of class 1 = 4/5
    # (P 2/3, R 1); macro-F1 = (2/3 + 4/5) / 2 = 11/15
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 2.0]])
    m = pipeline.classification_metrics(logits, torch.tensor([0, 0, 1, 1]), 2)
    assert m["accuracy"] == 0.75 and m["macro_f1"] == pytest.approx(11 / 15, abs=1e-12)
    # against scikit-learn on random labels, with classes that are never predicted or never present
    from sklearn.metrics import f1_score

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = torch.randint(0, 5, (30,), generator=gen)
        scores = torch.randn(30, 6, generator=gen)
        ref = f1_score(y.numpy(), scores.argmax(1).numpy(), labels=list(range(6)), average="macro", zero_division=0)
        assert pipeline.classification_metrics(scores, y, 6)["macro_f1"] == pytest.approx(ref, abs=1e-12)
    r = pipeline.regression_metrics(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
    assert r == {"mae": 1.5, "rmse": pytest.approx((2.5) ** 0.5)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def test_supervised_assembly_baselines_and_writers(tmp_path: Path) -> None:
    from xmodal.models import build_model

    def rows(labels: list[int]) -> Rows:
        return Rows([{"id": f"s{i}", "price": torch.tensor([float(y), 1.0]), "colour": torch.tensor(y % 3),
                      "label": y} for i, y in enumerate(labels)])

    train_set, val_set = rows([0, 1, 1, 1, 2, 1]), rows([1, 0, 2, 1])
    plan = {"encoders": {"price": {"modality": "numeric", "in_dim": 2, "width": 8},
                         "colour": {"modality": "categorical", "num_categories": 3, "width": 8}},
            "fusion": {"kind": "gated", "width": 8}, "head": {"kind": "classifier", "classes": 3}}
    torch.manual_seed(0)
    bundle = pipeline.assemble(kind="classification", model=build_model(plan),
                               modalities={"price": "numeric", "colour": "categorical"}, train_set=train_set,
                               val_set=val_set, classes=3, label_names=["red", "green", "blue"],
                               artifacts={"labels": ["red", "green", "blue"]})
    assert bundle.primary == "accuracy" and not bundle.coupled_loss
    batch = bundle.collate([train_set[i] for i in range(4)])
    assert bundle.loss(bundle.model(batch), batch).ndim == 0
    # majority class of training (1) on the validation labels 1 0 2 1: accuracy 1/2
    assert bundle.baselines(val_set)["majority"]["accuracy"] == 0.5
    metrics = bundle.evaluate(bundle.model, val_set)
    assert set(metrics) == {"accuracy", "macro_f1"}
    bundle.predict(bundle.model, val_set, tmp_path / "p.csv")
    table = list(csv.DictReader(open(tmp_path / "p.csv")))  # noqa: SIM115
    assert [r["id"] for r in table] == ["s0", "s1", "s2", "s3"] and set(table[0]) == {"id", "label", "p_red",
                                                                                      "p_green", "p_blue"}
    assert sum(float(table[0][f"p_{c}"]) for c in ("red", "green", "blue")) == pytest.approx(1, abs=1e-5)
    records = json.loads(bundle.predict(bundle.model, val_set, tmp_path / "p.json").read_text())
    assert records[0]["label"] in ("red", "green", "blue")
    torch.manual_seed(0)
    train(bundle, {"train": {**TRAIN, "epochs": 1, "batch_size": 2}}, out_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["red", "green", "blue"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["baselines"]["majority"]["accuracy"] == 0.5

    reg_plan = {"encoders": {"price": {"modality": "numeric", "in_dim": 2}}, "head": {"kind": "regression"}}
    reg = pipeline.assemble(kind="regression", model=build_model(reg_plan), modalities={"price": "numeric"},
                            train_set=train_set, val_set=val_set)
    # the training mean is 1.0; validation labels 1 0 2 1: MAE = (0 + 1 + 1 + 0) / 4
    assert reg.baselines(val_set)["mean"]["mae"] == 0.5 and reg.primary == "rmse" and not reg.higher_is_better
    reg.predict(reg.model, val_set, tmp_path / "r.json")
    assert len(json.loads((tmp_path / "r.json").read_text())) == 4


def test_resumed_run_keeps_competing_with_its_best(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = {**SMALL, "train": {**TRAIN, "epochs": 1, "eval_every": 2}}
    bundle = synthetic_pairs.build(cfg)
    bundle.evaluate, bundle.primary = ScriptedEvaluation([0.3, 0.9, 0.1, 0.5]), "score"
    train(bundle, cfg, out_dir=tmp_path)
    bundle.evaluate = ScriptedEvaluation([0.2])  # resumed at the end: one final evaluation, worse than step 4's
    train(bundle, cfg, out_dir=tmp_path, resume=True)
    assert json.loads((tmp_path / "best" / "best.json").read_text())["step"] == 4
    bundle.evaluate = ScriptedEvaluation([0.2, 0.25, 0.2, 0.2])  # a fresh run into the same folder starts over
    with pytest.warns(UserWarning, match="step_000000002 is gone"):  # pruned beside the old run's later steps
        train(bundle, cfg, out_dir=tmp_path)
    assert json.loads((tmp_path / "best" / "best.json").read_text())["value"] == 0.25


def test_average_precision_against_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score

    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        y = (torch.rand(40, generator=gen) < 0.3).long()
        if y.sum() == 0:
            continue
        scores = torch.randn(40, generator=gen)
        if trial % 2:
            scores = (scores * 2).round() / 2  # many tied scores: one precision-recall step per distinct score
        ref = average_precision_score(y.numpy(), scores.numpy())
        assert pipeline.average_precision(scores, y) == pytest.approx(ref, abs=1e-12)
    # hand-worked: scores 0.9 0.8 0.7 with labels 1 0 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    assert pipeline.average_precision(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1])) == pytest.approx(5 / 6)
    m = pipeline.multilabel_metrics(torch.tensor([[2.0, -1.0], [-1.0, 1.0]]), torch.tensor([[1, 0], [1, 1]]))
    # class 0: scores 2, -1 both positive -> AP 1; class 1: positive ranked first -> AP 1; micro-F1: tp 2, fn 1
    assert m == {"mean_average_precision": 1.0, "micro_f1": pytest.approx(0.8)}
