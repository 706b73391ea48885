"""Audio-visual scene builders: their official files read back by xmodal's readers equal the scenes' ground
truth (``scenes.jsonl``), have the reference loaders' layout (AVE's five ``&`` fields, AVVP's tab-separated
headers, MUSIC-AVQA's string-encoded lists), score 100 through ``xmodal eval`` when the ground truth is fed back
as predictions, and two builds with one seed are byte-identical."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_run import eval_output, first_json, read_scenes, runner

from xmodal.cli import app
from xmodal.data.benchmarks import ave, avvp, flickr_soundnet, music_avqa, vggss
from xmodal.data.synth import scene_benchmarks_av as av
from xmodal.errors import ConfigError

pytestmark = pytest.mark.slow  # each build renders and encodes real clips


def _eval(*args: str) -> dict:
    return first_json(eval_output(*args))


@pytest.fixture(scope="module")
def ave_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("ave")
    res = runner.invoke(app, ["data", "build", "ave-scenes", "--out", str(root), "--n", "6", "--seed", "4",
                              "--workers", "2"])
    assert res.exit_code == 0, res.output
    return root


def test_ave_files_read_back_as_theread_scenes(ave_build):
    lines = (ave_build / "Annotations.txt").read_text().splitlines()
    assert lines[0] == ave.AVE_HEADER and all(len(line.split("&")) == 5 for line in lines)
    truth = read_scenes(ave_build)
    records = ave.read_ave(ave_build / "Annotations.txt")
    assert sorted(r.video_id for r in records) == sorted(truth)
    for r in records:
        (target,) = [o for o in truth[r.video_id]["objects"] if o["visible"] and o["sounding"]]
        expect = [av.ave_name(target["cls"]) if target["cls"] in seg else ave.BACKGROUND
                  for seg in truth[r.video_id]["segments"]["av"]]
        assert r.segment_labels() == expect
        assert (ave_build / "AVE" / f"{r.video_id}.mp4").is_file()
    for name in ("trainSet.txt", "valSet.txt", "testSet.txt"):
        assert ave.read_ave(ave_build / name, unique=True)
    card = json.loads((ave_build / "card.json").read_text())
    assert "NOT comparable" in card["statement"] and card["provenance"]


def test_ave_ground_truth_scores_100(ave_build, tmp_path):
    test = ave.read_ave(ave_build / "testSet.txt", unique=True)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({r.video_id: r.segment_labels() for r in test}))
    assert _eval("ave", "--annotations", str(ave_build / "testSet.txt"), "--predictions", str(pred)) == {
        "accuracy": 100.0}


def test_ave_builds_are_deterministic(ave_build, tmp_path):
    other = av.build_ave(tmp_path / "again", n=6, seed=4, workers=1)
    for name in ("Annotations.txt", "trainSet.txt", "valSet.txt", "testSet.txt", "scenes.jsonl", "card.json",
                 "README.md"):
        assert (ave_build / name).read_bytes() == (other / name).read_bytes(), name


def test_llp_files_read_back_and_score_100(tmp_path):
    root = av.build_llp(tmp_path / "llp", n=5, seed=1, workers=2)
    header = (root / "AVVP_eval_audio.csv").read_text().splitlines()[0]
    assert header == "filename\tonset\toffset\tevent_labels"
    assert (root / "AVVP_train.csv").read_text().splitlines()[0] == "filename\tevent_labels"
    classes = avvp.read_avvp_classes(root / "classes.txt")
    truth = read_scenes(root)
    listed = [w.filename for w in avvp.read_avvp_weak(root / "AVVP_test_pd.csv", classes)]
    for modality, name in (("audio", "AVVP_eval_audio.csv"), ("visual", "AVVP_eval_visual.csv")):
        grids = avvp.rasterize(avvp.read_avvp_events(root / name, classes), listed, classes)
        for f in listed:
            segs = truth[f.removesuffix("_0_10")]["segments"][modality]
            expect = np.array([[av.avvp_name(c) in {av.avvp_name(x) for x in seg} for seg in segs]
                               for c in classes], dtype=np.int64)
            assert (grids[f] == expect).all(), (f, modality)
    for w in avvp.read_avvp_weak(root / "AVVP_train.csv", classes):
        segs = truth[w.filename.removesuffix("_0_10")]["segments"]
        assert set(w.event_labels) == {av.avvp_name(c) for s in segs["audio"] + segs["visual"] for c in s}
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "audio.csv").write_text((root / "AVVP_eval_audio.csv").read_text())
    (pred / "visual.csv").write_text((root / "AVVP_eval_visual.csv").read_text())
    scores = _eval("avvp", "--annotations", str(root), "--predictions", str(pred), "--classes",
                   str(root / "classes.txt"))
    assert all(v == 100.0 for v in scores.values()), scores


def test_vggss_boxes_are_the_sounding_objects_and_score_100(tmp_path):
    root = av.build_vggss(tmp_path / "vggss", n=5, seed=2, workers=1)
    truth = read_scenes(root)
    records = vggss.read_vggss(root / "vggss.json")
    heatmaps = {}
    for r in records:
        scene = truth[r.file]
        (obj,) = [o for o in scene["objects"] if o["sounding"]]
        x0, y0, x1, y1 = scene["boxes"][str(obj["id"])][int(av.REFERENCE_TIME * scene["config"]["fps"])]
        w, h = scene["config"]["width"], scene["config"]["height"]
        assert r.class_name == obj["cls"] and r.bboxes == ((x0 / w, y0 / h, x1 / w, y1 / h),)
        mask = np.zeros((224, 224), np.float32)  # the true box as a heatmap, in LVS's 224 grid
        mask[int(224 * y0 / h): int(224 * y1 / h), int(224 * x0 / w): int(224 * x1 / w)] = 1
        heatmaps[r.file] = mask
        assert (root / "frames" / f"{r.file}.jpg").is_file() and (root / "audio" / f"{r.file}.wav").is_file()
    np.savez(tmp_path / "heat.npz", **heatmaps)
    scores = _eval("sound-localization", "--annotations", str(root / "vggss.json"), "--predictions",
                   str(tmp_path / "heat.npz"))
    assert scores["ciou"] == 100.0 and scores["mean_ciou"] == 100.0


def test_flickr_annotators_jitter_around_the_true_box(tmp_path):
    root = av.build_flickr_soundnet(tmp_path / "flickr", n=4, seed=3, workers=1)
    truth = read_scenes(root)
    records = flickr_soundnet.read_flickr_dir(root / "Annotations")
    heatmaps = {}
    assert records and set(records) == set((root / "test.txt").read_text().split())
    for file_id, rec in records.items():
        scene = truth[file_id]
        (obj,) = [o for o in scene["objects"] if o["sounding"]]
        box = scene["boxes"][str(obj["id"])][int(av.REFERENCE_TIME * scene["config"]["fps"])]
        assert len(rec.boxes) == 3
        for b in rec.boxes:
            assert max(abs(a - t) for a, t in zip((b.xmin, b.ymin, b.xmax, b.ymax), box)) <= 6
        x0, y0, x1, y1 = (int(224 * v / 256) for v in box)
        heat = np.zeros((224, 224), np.float32)
        heat[y0:y1, x0:x1] = 1
        heatmaps[file_id] = heat
    np.savez(tmp_path / "heat.npz", **heatmaps)  # the true box succeeds against the annotators' consensus
    scores = _eval("sound-localization", "--annotations", str(root / "Annotations"), "--predictions",
                   str(tmp_path / "heat.npz"))
    assert scores["ciou"] == 100.0 and scores["mean_ciou"] > 60


def test_music_avqa_files_read_back_and_score_100(tmp_path):
    root = av.build_music_avqa(tmp_path / "avqa", n=8, seed=5, workers=2)
    raw = json.loads((root / "avqa-train.json").read_text())
    assert raw and all(isinstance(e["type"], str) and isinstance(e["templ_values"], str) and "anser" in e
                       for e in raw)
    truth = read_scenes(root)
    test = music_avqa.read_avqa(root / "avqa-test.json")
    for q in test:
        assert q.video_id in truth and (root / "MUSIC-AVQA-videos" / f"{q.video_id}.mp4").is_file()
        assert q.question_content.count("<Object>") == len(q.templ_values)
    from xmodal.data.io.video import read_video

    clip = read_video(root / "MUSIC-AVQA-videos" / f"{test[0].video_id}.mp4", with_audio=True)
    assert clip.audio is not None and clip.audio.shape[0] == 2  # stereo: sources panned by position
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({str(q.question_id): q.anser for q in test}))
    scores = _eval("avqa", "--annotations", str(root / "avqa-test.json"), "--predictions", str(pred))
    assert scores["Overall"] == 100.0


@pytest.mark.parametrize(("args", "message"), [
    (["--n", "2"], "a scene build needs n >= 3 clips (one per split), got 2"),
    (["--n", "6", "--workers", "0"], "workers must be at least 1, got 0"),
])
def test_bad_build_options_raise_config_error(tmp_path, args, message):
    # in-process: the command itself raises the typed error; xmodal.cli.main turns it into exit 2 (below)
    res = runner.invoke(app, ["data", "build", "ave-scenes", "--out", str(tmp_path / "x"), *args])
    assert isinstance(res.exception, ConfigError), (res.output, res.exception)
    assert str(res.exception) == message


def test_bad_build_option_exits_2_with_the_error_on_stderr(tmp_path):
    import subprocess
    import sys

    # one real process: the exit status and stderr that python -m xmodal gives a shell
    res = subprocess.run([sys.executable, "-m", "xmodal", "data", "build", "ave-scenes", "--out",
                          str(tmp_path / "x"), "--n", "2"], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "ConfigError: a scene build needs n >= 3 clips (one per split), got 2" in " ".join(res.stderr.split())


def test_data_list_shows_every_scene_builder():
    res = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for name in ("ave", "llp", "vggss", "flickr-soundnet", "music-avqa", "refcoco", "charades-sta", "snli-ve",
                 "hc-stvg", "coco-karpathy", "msrvtt", "audiocaps", "clotho"):
        assert f"{name}-scenes" in res.output
