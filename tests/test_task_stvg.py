"""The STVG task end to end on HC-STVG-format scenes: build -> xmodal train -> xmodal predict -> xmodal eval stvg,
the baselines recomputed by hand from the raw annotation JSON, TubeDETR's span choice on hand-worked logits, and
bad input named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import DataError

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"dim": 16, "heads": 2, "track_depth": 1, "frame_depth": 1, "decoder_depth": 1}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    root = tmp_path_factory.mktemp("stvg")
    return Path(get_builder("hc-stvg-scenes").build(root, n=10, seed=3, workers=2, layout="v2"))


def _recipe(tmp_path: Path, root: Path, steps: int = 4, **train: object) -> Path:
    """The committed recipe in its reduced CI form: tiny scenes, a tiny model, a few steps."""
    recipe = yaml.safe_load((REPO / "recipes" / "stvg.yaml").read_text(encoding="utf-8"))
    recipe["data"].update({"root": str(root), "cache": str(tmp_path / "cache"), "build": None})
    if (root / "anno_v2").is_dir():
        recipe["data"].update({"train_file": "anno_v2/trainv2.json", "eval_file": "anno_v2/valv2.json"})
    recipe["model"].update(TINY_MODEL)
    recipe["train"].update({"max_steps": steps, "batch_size": 8, "eval_every": steps, "checkpoint_every": steps,
                            "progress": False, "tensorboard": False, "threads": 1, "log_every": steps, "warmup": 0,
                            **train})
    path = tmp_path / "stvg.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _printed(stdout: str) -> dict:
    return json.loads(stdout[stdout.index("{"):])


def _viou_by_hand(rec: dict, box: list[float], first: int, stop: int) -> float:
    """TubeDETR's vIoU of one constant box on the sampled frames [first, stop) of a 5-fps clip (every frame is
    sampled: img_num / 20 = 5), against the record's [x, y, w, h] boxes."""
    frames = range(rec["img_num"] - 1)  # TubeDETR samples frames 0 .. img_num - 2 of an HC-STVG clip
    st, end = rec["st_frame"], rec["st_frame"] + len(rec["bbox"])
    union = [f for f in frames if min(st, first) <= f < max(end, stop)]
    total = 0.0
    for f in frames:
        if max(st, first) <= f < min(end, stop):
            x, y, w, h = rec["bbox"][f - st]
            iw = max(0.0, min(x + w, box[2]) - max(x, box[0]))
            ih = max(0.0, min(y + h, box[3]) - max(y, box[1]))
            inter = iw * ih
            total += inter / (w * h + (box[2] - box[0]) * (box[3] - box[1]) - inter)
    return total / max(len(union), 1)


@pytest.mark.slow  # builds scenes and trains through the CLI
def test_build_train_predict_eval(tmp_path: Path, scenes: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(_recipe(tmp_path, scenes)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    val = json.loads((scenes / "anno_v2" / "valv2.json").read_text())
    train = json.loads((scenes / "anno_v2" / "trainv2.json").read_text())
    assert doc["primary"] == "m_vIoU" and doc["split"] == "valv2" and doc["n"] == len(val)
    assert set(doc["baselines"]) == {"static_box", "full_extent", "chance"}
    # the full-extent and static-box tubes by hand: the mean training box (fractions of the frame, v2's
    # img_size is [height, width]) on every sampled frame, or on the mean training span
    corners, spans = [], []
    for rec in train.values():
        h, w = rec["img_size"]
        corners += [(x / w, y / h, (x + bw) / w, (y + bh) / h) for x, y, bw, bh in rec["bbox"]]
        spans.append((rec["st_frame"] / rec["img_num"], (rec["st_frame"] + len(rec["bbox"])) / rec["img_num"]))
    mean = [sum(c[i] for c in corners) / len(corners) for i in range(4)]
    start, end = (sum(s[i] for s in spans) / len(spans) for i in (0, 1))
    full, static = [], []
    for rec in val.values():
        h, w = rec["img_size"]
        box = [mean[0] * w, mean[1] * h, mean[2] * w, mean[3] * h]
        full.append(_viou_by_hand(rec, box, 0, rec["img_num"] - 1))
        static.append(_viou_by_hand(rec, box, math.ceil(start * rec["img_num"]), math.ceil(end * rec["img_num"])))
    assert doc["baselines"]["full_extent"]["m_vIoU"] == pytest.approx(100 * sum(full) / len(full))
    assert doc["baselines"]["static_box"]["m_vIoU"] == pytest.approx(100 * sum(static) / len(static))

    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--out", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert set(pred) == set(val)
    args = ["eval", "stvg", "--annotations", str(scenes / "anno_v2" / "valv2.json")]
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "pred.json")])
    assert res.exit_code == 0, res.output
    best = json.loads((tmp_path / "run" / "best" / "best.json").read_text())["metrics"]
    for key, value in _printed(res.stdout).items():
        assert value == pytest.approx(best[key], abs=0.05), key  # boxes rounded to 1/1000 pixel

    truth = {k: {"boxes": {str(r["st_frame"] + j): [x, y, x + w, y + h] for j, (x, y, w, h) in enumerate(r["bbox"])}}
             for k, r in val.items()}
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    res = runner.invoke(app, [*args, "--predictions", str(tmp_path / "gt.json")])
    assert _printed(res.stdout)["m_vIoU"] == 100.0


def test_span_is_tubedetrs_best_start_end_pair() -> None:
    from xmodal.tasks.stvg import best_span

    # p(start) = [0.5, 0.3, 0.2], p(end) = [0.1, 0.6, 0.3]: products with start <= end are (0, 0) 0.05,
    # (0, 1) 0.30, (0, 2) 0.15, (1, 1) 0.18, (1, 2) 0.09, (2, 2) 0.06
    def logits(p_start: list[float], p_end: list[float]) -> torch.Tensor:
        return torch.stack([torch.tensor(p_start).log(), torch.tensor(p_end).log()], dim=1)

    assert best_span(logits([0.5, 0.3, 0.2], [0.1, 0.6, 0.3]), torch.ones(3, dtype=torch.bool)) == (0, 1)
    # the best product overall would be start 2, end 0 (0.56); with start <= end it is (0, 0) 0.08 over (2, 2) 0.07
    sted = logits([0.1, 0.2, 0.7], [0.8, 0.1, 0.1])
    assert best_span(sted, torch.ones(3, dtype=torch.bool)) == (0, 0)
    padded = torch.cat([sted, torch.full((2, 2), float("-inf"))])  # padded frames are never chosen
    assert best_span(padded, torch.tensor([True, True, True, False, False])) == (0, 0)


def test_missing_candidates_and_clips_are_named(tmp_path: Path, scenes: Path) -> None:
    from xmodal.tasks.base import build_task

    data = {"root": str(scenes), "cache": str(tmp_path / "c"), "train_file": "anno_v2/trainv2.json",
            "eval_file": "anno_v2/valv2.json", "candidates": "tracks.jsonl"}
    with pytest.raises(DataError, match="tracks.jsonl"):
        build_task({"task": "stvg", "data": data})
    (tmp_path / "anno_v2").mkdir()
    key = next(iter(json.loads((scenes / "anno_v2" / "valv2.json").read_text())))
    rec = json.loads((scenes / "anno_v2" / "valv2.json").read_text())[key]
    for name in ("trainv2.json", "valv2.json"):
        (tmp_path / "anno_v2" / name).write_text(json.dumps({"nosuchclip.mp4": rec}))
    (tmp_path / "video" / "x").mkdir(parents=True)
    (tmp_path / "scenes.jsonl").write_text("")
    data.update(root=str(tmp_path), candidates="scenes.jsonl")
    with pytest.raises(DataError, match="nosuchclip.mp4"):
        build_task({"task": "stvg", "data": data})


@pytest.mark.parametrize("regress", [False, True])
def test_ranker_masks_and_gradients(regress: bool) -> None:
    """Off-screen candidates are never chosen, a track never on screen and padded frames give no NaN, and the
    loss reaches every parameter (boxes regressed from the queries, or the expected candidate box)."""
    from xmodal.nn.vl import TubeRanker, expected_boxes, ranking_stvg_loss

    torch.manual_seed(0)
    b, t, k, f = 2, 7, 3, 5
    model = TubeRanker(f, text_dim=6, dim=8, heads=2, regress=regress)
    mask = torch.ones(b, t, k, dtype=torch.bool)
    mask[:, :, 2] = False  # track 2 is never on screen
    mask[0, 3, 0] = False
    time_mask = torch.ones(b, t, dtype=torch.bool)
    time_mask[1, 5:] = False  # the second clip has 5 frames
    out = model(torch.randn(b, t, k, f), mask, torch.randn(b, 4, 6), torch.ones(b, 4, dtype=torch.bool), time_mask)
    assert out["scores"].shape == (b, t, k) and out["sted"].shape == (b, t, 2)
    assert torch.isinf(out["scores"][:, :, 2]).all() and torch.isinf(out["scores"][0, 3, 0])
    assert torch.isfinite(out["scores"][0, 3, 1]) and torch.isinf(out["sted"][1, 5:]).all()
    assert torch.isfinite(out["sted"][time_mask]).all()
    cand = torch.tensor([0.3, 0.3, 0.2, 0.2]).expand(b, t, k, 4).clone()
    cand[..., 1, 0] = 0.7
    target = torch.full((b, t), -1)
    target[:, 1:4] = 1
    target[0, 3] = 1
    boxes = cand[:, :, 1].clone()
    parts = ranking_stvg_loss(out, cand, target, boxes, torch.tensor([[1, 3], [1, 3]]), time_mask)
    assert torch.isfinite(parts["loss"]) and parts["rank"] > 0
    parts["loss"].backward()
    unused = {"box"} if not regress else set()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.split(".")[0] not in unused)
    # the expected box is the softmax-weighted candidate box: with scores (0, log 3, -inf) the weights are 1/4, 3/4
    scores = torch.tensor([0.0, math.log(3.0), float("-inf")]).expand(1, 1, 3)
    assert expected_boxes(scores, cand[:1, :1])[0, 0].tolist() == pytest.approx([0.6, 0.3, 0.2, 0.2])


@pytest.mark.slow  # 40 scenes and 60 steps
def test_reduced_run_beats_every_baseline(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    from xmodal.data.registry import get_builder

    root = Path(get_builder("hc-stvg-scenes").build(tmp_path_factory.mktemp("stvg40"), n=40, seed=0, workers=2))
    recipe = _recipe(tmp_path, root, steps=60, warmup=6, eval_every=0)
    res = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("m_vIoU", "vIoU@0.3"):
        best_baseline = max(row[key] for row in metrics["baselines"].values())
        assert metrics["model"][key] > best_baseline + 2, metrics


def test_data_build_passes_the_layout(tmp_path: Path) -> None:
    """``xmodal data build --layout`` reaches the builder; a builder without layouts refuses it."""
    from xmodal.errors import ConfigError

    runner = CliRunner()
    res = runner.invoke(app, ["data", "build", "hc-stvg-scenes", "--out", str(tmp_path / "a"), "--layout", "v3"])
    assert isinstance(res.exception, ConfigError) and "layout must be one of v1, v2" in str(res.exception)
    res = runner.invoke(app, ["data", "build", "charades-sta-scenes", "--out", str(tmp_path / "b"), "--layout", "v2"])
    assert isinstance(res.exception, ConfigError) and "unknown options ['layout']" in str(res.exception)
