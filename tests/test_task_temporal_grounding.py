"""The temporal grounding task end to end on Charades-STA-format scenes: build -> xmodal train -> xmodal predict
-> xmodal eval temporal-grounding, the moment-position prior recomputed from the raw annotation lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    root = tmp_path_factory.mktemp("sta")
    return Path(get_builder("charades-sta-scenes").build(root, n=12, seed=3))


def _recipe(tmp_path: Path, root: Path, steps: int = 4) -> Path:
    """The committed recipe in its reduced CI form: tiny scenes, a tiny model, a few steps."""
    recipe = yaml.safe_load((REPO / "recipes" / "temporal_grounding.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "cache": str(tmp_path / "cache"), "steps": 16, "frame_size": [8, 8], "build": None})
    recipe["model"].update({"dim": 16, "heads": 2})
    recipe["train"].update({"max_steps": steps, "batch_size": 8, "lr": 1e-3, "eval_every": steps, "checkpoint_every": steps,
                            "progress": False,
                            "tensorboard": False, "threads": 1, "log_every": steps, "warmup": 0})
    path = tmp_path / "temporal.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _lines(path: Path) -> list[tuple[str, float, float]]:
    out = []
    for line in path.read_text().splitlines():
        vid, start, end = line.split("##")[0].split()
        out.append((vid, float(start), float(end)))
    return out


def _printed(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path, scenes: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(_recipe(tmp_path, scenes)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test, train = _lines(scenes / "charades_sta_test.txt"), _lines(scenes / "charades_sta_train.txt")
    assert doc["primary"] == "R@1,IoU=0.5" and doc["split"] == "charades_sta_test" and doc["n"] == len(test)
    assert set(doc["baselines"]) == {"prior", "chance"}
    # the prior by hand: the mean training start and end fractions of the 16-s clips, scored with TALL's IoU
    s = sum(a / 16 for _, a, _ in train) / len(train) * 16
    e = sum(b / 16 for _, _, b in train) / len(train) * 16
    ious = [(min(e, b) - max(s, a)) / (max(e, b) - min(s, a)) for _, a, b in test]
    assert doc["baselines"]["prior"]["mIoU"] == pytest.approx(100 * sum(max(0, i) for i in ious) / len(test))
    assert doc["baselines"]["prior"]["R@1,IoU=0.3"] == pytest.approx(100 * sum(i >= 0.3 for i in ious) / len(test))

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    args = ["eval", "temporal-grounding", "--annotations", str(scenes / "charades_sta_test.txt")]
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["metrics"]
    for key, value in _printed(res.stdout).items():
        assert value == pytest.approx(best[key], abs=0.01), key  # predictions rounded to 0.1 ms

    truth = [{"video": v, "segments": [[a, b]], "scores": [1.0]} for v, a, b in test]
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "gt.json")])
    assert all(v == 100.0 for v in _printed(res.stdout).values())


def test_missing_video_is_named(tmp_path: Path, scenes: Path) -> None:
    from xmodal.tasks.base import build_task

    (tmp_path / "charades_sta_train.txt").write_text("nosuchvideo 1.0 2.0##a dog barks\n")
    (tmp_path / "charades_sta_test.txt").write_text("nosuchvideo 1.0 2.0##a dog barks\n")
    with pytest.raises(DataError, match="nosuchvideo.mp4"):
        build_task({"task": "temporal_grounding", "data": {"root": str(tmp_path), "cache": str(tmp_path / "c")}})


@pytest.mark.slow  # 40 clips and 100 steps
def test_reduced_run_beats_the_moment_prior(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("charades-sta-scenes").build(tmp_path_factory.mktemp("sta40"), n=40, seed=0, workers=2))
    recipe = yaml.safe_load((REPO / "recipes" / "temporal_grounding.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "cache": str(tmp_path / "cache"), "build": None})
    recipe["train"].update({"max_steps": 100, "warmup": 10, "progress": False, "tensorboard": False, "threads": 1,
                            "log_every": 100, "checkpoint_every": 100, "eval_every": 0})
    path = tmp_path / "temporal.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    res = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    model, prior = metrics["model"], metrics["baselines"]["prior"]
    assert metrics["n"] >= 16
    # the primary metric by more than 10 points, and the mean IoU of the top-1
    for baseline in metrics["baselines"].values():
        assert model["R@1,IoU=0.5"] > baseline["R@1,IoU=0.5"] + 10, metrics
        assert model["mIoU"] > baseline["mIoU"] + 5, metrics
    assert model["R@1,IoU=0.3"] > prior["R@1,IoU=0.3"], metrics
