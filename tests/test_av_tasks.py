"""The audio-visual tasks end to end on scene datasets: build -> ``xmodal train`` (the committed recipe, on a
smaller build) -> ``xmodal predict`` -> ``xmodal eval <task>``. On 80 clips (56 training, 16 held out) the models
beat every trivial baseline in ``metrics.json`` by a stated margin; the chance and broadcast baselines equal their
hand-worked values, and the official evaluation of the written predictions reproduces the run's own number. The
builds also write the features the benchmarks distribute (``-o features=true``): read back through the tasks'
official-feature path they give exactly the streams the raw-clip path computes from the MP4s. Bad configuration
is a typed error.

Each build (80 clips, its features computed once into the content cache, which training then reads) is shared by
the module's tests. The seed of the builds (7) is not the one the recipes were set on (5, 100 clips)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from xmodal.cli import app, main
from xmodal.config import load_recipe
from xmodal.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CLIPS, SEED = 80, 7
# the model's lead over the best baseline, in points (percent). AVVP Type@AV and Event@AV, segment and event level:
# measured on this build, segment Type@AV 30.47 against 15.22, Event@AV 26.84 against 13.22 (audio-only).
MARGIN = 5.0
# AVE accuracy on 16 test clips (160 segments, one segment = 0.625 points) moves with the CPU type even at one
# thread: seeds 0-3 on a 2-core AMD EPYC give 75.0 / 71.875 / 75.0 / 72.5 against 67.5 (majority); CI on another
# CPU gave 71.875 at seed 0 (76.25 on the Intel machine the recipe was set on). The smallest lead seen is 4.375.
AVE_MARGIN = 3.0


def _build(name: str, out: Path) -> Path:
    res = CliRunner().invoke(app, ["data", "build", name, "--out", str(out), "--n", str(CLIPS), "--seed", str(SEED),
                                   "--workers", "2", "-o", "features=true"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out


@pytest.fixture(scope="module")
def ave_root(tmp_path_factory) -> Path:
    return _build("ave-scenes", tmp_path_factory.mktemp("ave"))


@pytest.fixture(scope="module")
def llp_root(tmp_path_factory) -> Path:
    return _build("llp-scenes", tmp_path_factory.mktemp("llp"))


def _train(tmp: Path, recipe: str, root: Path, *overrides: str) -> Path:
    out = tmp / "run"
    args = ["train", str(REPO / "recipes" / recipe), "--out", str(out), "--set", f"data.root={root}",
            "--set", "train.eval_every=0"]  # the default feature cache, which the build filled
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


@pytest.mark.slow  # builds, decodes and trains on 80 clips
def test_ave_beats_every_baseline(ave_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from xmodal.data.benchmarks.ave import read_ave

    run = _train(tmp_path, "ave.yaml", ave_root)
    doc = json.loads((run / "metrics.json").read_text())
    test = read_ave(ave_root / "testSet.txt")
    assert doc["primary"] == "accuracy" and doc["split"] == "test" and doc["n"] == len(test)
    assert set(doc["baselines"]) == {"chance", "majority", "broadcast_clip_label", "audio_only", "visual_only"}
    classes = json.loads((run / "classes.json").read_text())
    assert classes[-1] == "background" and doc["baselines"]["chance"]["accuracy"] == pytest.approx(100 / len(classes))
    event = sum(r.end - r.start for r in test)  # broadcasting the clip label is right on the event segments only
    assert doc["baselines"]["broadcast_clip_label"]["accuracy"] == pytest.approx(100 * event / (10 * len(test)))
    best_baseline = max(row["accuracy"] for row in doc["baselines"].values())
    assert doc["model"]["accuracy"] >= best_baseline + AVE_MARGIN, doc
    _predict(run, tmp_path / "pred.json")
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert set(pred) == {r.video_id for r in test} and all(len(v) == 10 for v in pred.values())
    scores = _eval(monkeypatch, capsys, "ave", "--annotations", str(ave_root / "testSet.txt"),
                   "--predictions", str(tmp_path / "pred.json"))
    best = json.loads((run / "best" / "best.json").read_text())
    assert scores["accuracy"] == pytest.approx(best["metrics"]["accuracy"], abs=1e-9)
    assert scores["accuracy"] == pytest.approx(doc["model"]["accuracy"], abs=1e-9)


@pytest.mark.slow  # builds, decodes and trains on 80 clips
def test_avvp_beats_every_baseline(llp_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run = _train(tmp_path, "avvp.yaml", llp_root)
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["primary"] == "segment_type" and doc["split"] == "test"
    assert set(doc["baselines"]) == {"chance", "majority", "audio_only", "visual_only"}
    assert set(doc["model"]) == set(doc["baselines"]["chance"]) and len(doc["model"]) == 10
    for metric, value in doc["model"].items():  # above every baseline everywhere, clearly on the summaries
        best_baseline = max(row[metric] for row in doc["baselines"].values())
        margin = MARGIN if metric.endswith(("_type", "_event")) else 0.0
        assert value > best_baseline + margin, (metric, doc)
    _predict(run, tmp_path / "pred")
    assert {p.name for p in (tmp_path / "pred").iterdir()} == {"audio.csv", "visual.csv"}
    scores = _eval(monkeypatch, capsys, "avvp", "--annotations", str(llp_root), "--predictions",
                   str(tmp_path / "pred"), "--classes", str(llp_root / "classes.txt"))
    best = json.loads((run / "best" / "best.json").read_text())
    assert scores == pytest.approx(best["metrics"], abs=1e-9)
    assert scores == pytest.approx(doc["model"], abs=1e-9)


def _streams(bundle, keys: tuple[str, ...]) -> list[np.ndarray]:
    return [np.concatenate([c[k].numpy().ravel() for k in keys]) for c in bundle.train_set.clips + bundle.val_set.clips]


@pytest.mark.slow  # reads the shared build's 80 clips twice
def test_ave_scenes_hdf5_features_equal_the_raw_clip_path(ave_root: Path) -> None:
    import h5py

    from xmodal.data.benchmarks.ave import read_ave
    from xmodal.tasks import av_segments
    from xmodal.tasks.base import build_task

    lines = read_ave(ave_root / "Annotations.txt")
    features = ave_root / "features"
    with h5py.File(features / "audio_feature.h5") as fa, h5py.File(features / "visual_feature.h5") as fv:
        audio, visual = fa["avadataset"][()], fv["avadataset"][()]
    assert audio.shape == (len(lines), 10, 128) and visual.shape == (len(lines), 10, 7, 7, 64)
    assert audio.dtype == visual.dtype == np.float32
    third = av_segments.clip_features([ave_root / "AVE" / f"{lines[3].video_id}.mp4"])[0]  # row i: line i's clip
    assert np.array_equal(audio[3], third["audio"].numpy()) and np.array_equal(visual[3], third["visual"].numpy())
    assert "features/audio_feature.h5" in (ave_root / "README.md").read_text(encoding="utf-8")

    common = [f"data.root={ave_root}", "model.acoustic=false", "model.evidence=false"]
    recipe = REPO / "recipes" / "ave.yaml"
    official = build_task(load_recipe(recipe, [*common, f"data.features={features}"]))
    raw = build_task(load_recipe(recipe, common))
    for a, b in zip(_streams(official, ("audio", "visual")), _streams(raw, ("audio", "visual")), strict=True):
        assert np.allclose(a, b, atol=1e-6)


@pytest.mark.slow  # reads the shared build's 80 clips twice
def test_llp_scenes_npy_features_equal_the_raw_clip_path(llp_root: Path) -> None:
    from xmodal.tasks.base import build_task

    clips = sorted(p.stem for p in (llp_root / "LLP_dataset" / "video").glob("*.mp4"))
    for folder, shape in (("vggish", (10, 128)), ("res152", (80, 64)), ("r2plus1d_18", (10, 128))):
        files = sorted((llp_root / "features" / folder).iterdir())
        assert [f.stem for f in files] == clips  # one file a clip, no partial files left
        assert np.load(files[0]).shape == shape and np.load(files[0]).dtype == np.float32

    common = [f"data.root={llp_root}", "model.acoustic=false", "model.evidence=false"]
    recipe = REPO / "recipes" / "avvp.yaml"
    official = build_task(load_recipe(recipe, [*common, f"data.features={llp_root / 'features'}"]))
    raw = build_task(load_recipe(recipe, common))
    keys = ("audio", "visual", "motion")
    for a, b in zip(_streams(official, keys), _streams(raw, keys), strict=True):
        assert np.allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match=r"model\.evidence"):  # the distributed features hold no evidence
        build_task(load_recipe(recipe, [*common[:2], f"data.features={llp_root / 'features'}"]))


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
