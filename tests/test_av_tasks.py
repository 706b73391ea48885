"""The audio-visual tasks end to end on scene datasets: build -> ``xmodal train`` (the committed recipe, reduced
with ``--set``) -> ``xmodal predict`` -> ``xmodal eval <task>``. ``metrics.json`` holds the model and every
trivial baseline on the held-out split, the chance and majority baselines equal their hand-worked values, and
the official evaluation of the written predictions reproduces the run's own number for the best checkpoint;
bad configuration is a typed error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xmodal.cli import app, main
from xmodal.config import load_recipe
from xmodal.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _train(tmp: Path, recipe: str, root: Path, *overrides: str) -> Path:
    out = tmp / "run"
    args = ["train", str(REPO / "recipes" / recipe), "--out", str(out), "--set", f"data.root={root}",
            "--set", f"data.cache={tmp / 'cache'}", "--set", "train.eval_every=0"]
    for override in overrides:
        args += ["--set", override]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out


def _eval(monkeypatch, capsys, *args: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["xmodal", "eval", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    assert (exit_info.value.code or 0) == 0, out.err
    return json.loads(out.out)


def _predict(run: Path, out: Path) -> None:
    res = CliRunner().invoke(app, ["predict", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)


@pytest.mark.slow  # builds, decodes and trains on 20 clips
def test_ave_build_train_predict_eval(tmp_path: Path, monkeypatch, capsys) -> None:
    from xmodal.data.benchmarks.ave import read_ave
    from xmodal.data.synth.scene_benchmarks_av import build_ave

    root = build_ave(tmp_path / "ave", n=20, seed=3, workers=2)
    run = _train(tmp_path, "ave.yaml", root, "train.epochs=2", "train.batch_size=4")
    doc = json.loads((run / "metrics.json").read_text())
    test = read_ave(root / "testSet.txt")
    assert doc["primary"] == "accuracy" and doc["split"] == "test" and doc["n"] == len(test)
    assert set(doc["baselines"]) == {"chance", "majority", "broadcast_clip_label", "audio_only", "visual_only"}
    classes = json.loads((run / "classes.json").read_text())
    assert classes[-1] == "background" and doc["baselines"]["chance"]["accuracy"] == pytest.approx(100 / len(classes))
    event = sum(r.end - r.start for r in test)  # broadcasting the clip label is right on the event segments only
    assert doc["baselines"]["broadcast_clip_label"]["accuracy"] == pytest.approx(100 * event / (10 * len(test)))
    _predict(run, tmp_path / "pred.json")
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert set(pred) == {r.video_id for r in test} and all(len(v) == 10 for v in pred.values())
    scores = _eval(monkeypatch, capsys, "ave", "--annotations", str(root / "testSet.txt"),
                   "--predictions", str(tmp_path / "pred.json"))
    best = json.loads((run / "best" / "best.json").read_text())
    assert scores["accuracy"] == pytest.approx(best["metrics"]["accuracy"], abs=1e-9)


@pytest.mark.slow  # builds, decodes and trains on 20 clips
def test_avvp_build_train_predict_eval(tmp_path: Path, monkeypatch, capsys) -> None:
    from xmodal.data.synth.scene_benchmarks_av import build_llp

    root = build_llp(tmp_path / "llp", n=20, seed=3, workers=2)
    run = _train(tmp_path, "avvp.yaml", root, "train.epochs=2", "train.batch_size=4")
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["primary"] == "segment_type" and doc["split"] == "test"
    assert set(doc["baselines"]) == {"chance", "majority", "audio_only", "visual_only"}
    assert set(doc["model"]) == set(doc["baselines"]["chance"]) and len(doc["model"]) == 10
    _predict(run, tmp_path / "pred")
    assert {p.name for p in (tmp_path / "pred").iterdir()} == {"audio.csv", "visual.csv"}
    scores = _eval(monkeypatch, capsys, "avvp", "--annotations", str(root), "--predictions", str(tmp_path / "pred"),
                   "--classes", str(root / "classes.txt"))
    best = json.loads((run / "best" / "best.json").read_text())
    assert scores == pytest.approx(best["metrics"], abs=1e-9)


def test_recipes_parse_and_refuse_bad_settings(tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    for name in ("ave.yaml", "avvp.yaml"):
        assert load_recipe(REPO / "recipes" / name)["task"] == name.removesuffix(".yaml")
    with pytest.raises(ConfigError, match=r"model\.hidden: must be >= 1"):
        build_task(load_recipe(REPO / "recipes" / "ave.yaml", ["model.hidden=0"]))
    with pytest.raises(ConfigError, match=r"data\.eval_split"):
        build_task(load_recipe(REPO / "recipes" / "avvp.yaml", ["data.eval_split=train"]))
    with pytest.raises(ConfigError, match=r"model\.heads: must divide"):
        build_task(load_recipe(REPO / "recipes" / "avvp.yaml", ["model.heads=3"]))


def test_missing_files_are_typed_errors(tmp_path: Path) -> None:
    from xmodal.errors import DataError
    from xmodal.tasks.base import build_task

    with pytest.raises(DataError, match="Annotations.txt"):
        build_task(load_recipe(REPO / "recipes" / "ave.yaml", [f"data.root={tmp_path}"]))
    with pytest.raises(DataError, match="AVVP_train.csv"):
        build_task(load_recipe(REPO / "recipes" / "avvp.yaml", [f"data.root={tmp_path}"]))


def test_ave_official_hdf5_features(tmp_path: Path) -> None:
    """The official layout: feature rows follow the lines of Annotations.txt, which repeats a VideoID for two
    events; the split file names one of them and gets that line's row."""
    import h5py
    import numpy as np
    import torch

    from xmodal.data.benchmarks.ave import AVEAnnotation, write_ave
    from xmodal.tasks.base import build_task

    lines = [AVEAnnotation("Bark", "a", "good", 2, 5), AVEAnnotation("Bus", "b", "good", 0, 10),
             AVEAnnotation("Cat", "a", "good", 6, 9), AVEAnnotation("Bark", "c", "good", 1, 2)]
    write_ave(tmp_path / "Annotations.txt", lines, header=False)
    write_ave(tmp_path / "trainSet.txt", [lines[0], lines[1]])
    write_ave(tmp_path / "testSet.txt", [lines[2], lines[3]])
    rows = np.arange(4, dtype=np.float32)[:, None, None]
    with h5py.File(tmp_path / "audio_feature.h5", "w") as f:
        f["avadataset"] = np.broadcast_to(rows, (4, 10, 128)).copy()
    with h5py.File(tmp_path / "visual_feature.h5", "w") as f:
        f["avadataset"] = np.broadcast_to(rows[..., None, None], (4, 10, 7, 7, 512)).copy()
    bundle = build_task(load_recipe(REPO / "recipes" / "ave.yaml", [
        f"data.root={tmp_path}", f"data.features={tmp_path}", "model.acoustic=false", "model.evidence=false"]))
    assert bundle.artifacts["classes"][:3] == ["Church bell", "Male speech, man speaking", "Bark"]  # official order
    # rows 0 and 1 train: 20 segment values, ten 0s and ten 1s: mean 0.5, sample std sqrt(10 * 0.25 * 2 / 19)
    std = np.sqrt(5 / 19)
    train_audio = [float(c["audio"][0, 0]) for c in bundle.train_set.clips]
    assert train_audio == pytest.approx([-0.5 / std, 0.5 / std], abs=1e-5)
    test_audio = [float(c["audio"][0, 0]) for c in bundle.val_set.clips]  # rows 2 and 3 on the training scale
    assert test_audio == pytest.approx([1.5 / std, 2.5 / std], abs=1e-5)
    cat = bundle.artifacts["classes"].index("Cat")
    assert bundle.val_set.targets[0].tolist() == [28] * 6 + [cat] * 3 + [28]
    out = bundle.model(bundle.collate([bundle.val_set[0], bundle.val_set[1]]))
    assert out["logits"].shape == (2, 10, 29) and torch.isfinite(out["logits"]).all()
