"""``xmodal eval ave | avvp | sound-localization | avqa`` end to end on files written by the official-format
writers: one JSON object on stdout, ground truth fed back as predictions scores 100 everywhere, hand-worked
values on perturbed predictions, and exit status 2 on malformed input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from xmodal.cli import main
from xmodal.data.benchmarks.ave import AVEAnnotation, write_ave
from xmodal.data.benchmarks.avvp import (
    AVVP_CLASSES,
    AVVPEvent,
    AVVPWeakLabel,
    rasterize,
    write_avvp_classes,
    write_avvp_events,
    write_avvp_predictions,
    write_avvp_weak,
)
from xmodal.data.benchmarks.flickr_soundnet import FlickrAnnotation, FlickrBox, write_flickr_dir
from xmodal.data.benchmarks.music_avqa import AVQARecord, write_avqa
from xmodal.data.benchmarks.vggss import VGGSSAnnotation, write_vggss
from xmodal.metrics.localization import vggss_gt_map


def run(monkeypatch, capsys, *args: str) -> tuple[int, dict | None, str]:
    monkeypatch.setattr(sys, "argv", ["xmodal", "eval", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    code = exit_info.value.code or 0
    return code, (json.loads(out.out) if code == 0 else None), out.err


# ------------------------------------------------------------------------------------------------------ AVE

def test_eval_ave(tmp_path, monkeypatch, capsys):
    records = [AVEAnnotation("Church bell", "a", "good", 6, 8), AVEAnnotation("Baby cry, infant cry", "b", "good", 0, 10),
               AVEAnnotation("Bark", "c", "good", 0, 0)]
    write_ave(tmp_path / "testSet.txt", records, header=False)
    truth = {r.video_id: r.segment_labels() for r in records}
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    code, out, err = run(monkeypatch, capsys, "ave", "--annotations", str(tmp_path / "testSet.txt"),
                         "--predictions", str(tmp_path / "gt.json"))
    assert code == 0 and out == {"accuracy": 100.0} and "30 segments" in err
    broadcast = {k: ["background"] * 10 for k in truth}  # right on a's 8 and c's 10 segments
    (tmp_path / "bg.json").write_text(json.dumps(broadcast))
    _, out, _ = run(monkeypatch, capsys, "ave", "--annotations", str(tmp_path / "testSet.txt"),
                    "--predictions", str(tmp_path / "bg.json"))
    assert out == {"accuracy": 100 * 18 / 30}


@pytest.mark.parametrize("annotations, predictions, message", [
    ("Bark&a&good&0&1\nCat&a&good&2&3\n", {"a": ["Bark"] * 10}, "repeats line 1"),
    ("Bark&a&good&0&1\n", {}, "no prediction for clip 'a'"),
    ("Bark&a&good&0&1\n", {"a": ["Bark"] * 9}, "10 labels"),
    ("Bark&a&good&0&1\n", {"a": "Bark"}, "list of label strings"),
])
def test_eval_ave_exit_2(tmp_path, monkeypatch, capsys, annotations, predictions, message):
    (tmp_path / "t.txt").write_text(annotations)
    (tmp_path / "p.json").write_text(json.dumps(predictions))
    code, _, err = run(monkeypatch, capsys, "ave", "--annotations", str(tmp_path / "t.txt"),
                       "--predictions", str(tmp_path / "p.json"))
    assert code == 2 and message in err.replace("\n", "")


# ------------------------------------------------------------------------------------------------------ AVVP

def _avvp_folder(tmp_path):
    ann = tmp_path / "ann"
    write_avvp_weak(ann / "AVVP_test_pd.csv", [AVVPWeakLabel("v1_0_10", ("Speech",)), AVVPWeakLabel("v2_0_10", ())])
    write_avvp_weak(ann / "AVVP_val_pd.csv", [AVVPWeakLabel("v3_0_10", ("Dog",))])
    audio = [AVVPEvent("v1_0_10", 0, 4, "Speech"), AVVPEvent("v1_0_10", 9, 9, "Dog"),
             AVVPEvent("v3_0_10", 0, 10, "Dog"), AVVPEvent("other_0_10", 0, 10, "Cat")]
    visual = [AVVPEvent("v1_0_10", 2, 6, "Speech"), AVVPEvent("v3_0_10", 3, 5, "Dog")]
    write_avvp_events(ann / "AVVP_eval_audio.csv", audio)
    write_avvp_events(ann / "AVVP_eval_visual.csv", visual)
    return ann, audio, visual


def test_eval_avvp(tmp_path, monkeypatch, capsys):
    ann, audio, visual = _avvp_folder(tmp_path)
    pred = tmp_path / "pred"
    write_avvp_events(pred / "audio.csv", audio)
    write_avvp_events(pred / "visual.csv", visual)
    for split in ("test", "val"):
        code, out, _ = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(pred),
                           "--split", split)
        assert code == 0 and set(out.values()) == {100.0} and len(out) == 10
    # No predictions at all: v1 scores 0 everywhere it has ground truth; v2 (no events) scores 1.0.
    write_avvp_events(pred / "audio.csv", [])
    write_avvp_events(pred / "visual.csv", [])
    _, out, _ = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(pred))
    assert out["segment_audio"] == 50.0 and out["event_av"] == 50.0 and out["segment_type"] == 50.0


def test_eval_avvp_on_written_prediction_grids(tmp_path, monkeypatch, capsys):
    ann, audio, visual = _avvp_folder(tmp_path)
    videos = ["v1_0_10", "v2_0_10"]
    grid_a, grid_v = rasterize(audio, videos), rasterize(visual, videos)
    write_avvp_predictions(tmp_path / "pred", grid_a, grid_v)
    _, out, _ = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(tmp_path / "pred"))
    assert set(out.values()) == {100.0}
    grid_v["v1_0_10"][AVVP_CLASSES.index("Speech"), 5] = 0  # visual Speech [2, 5) instead of [2, 6)
    write_avvp_predictions(tmp_path / "pred", grid_a, grid_v)
    _, out, _ = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(tmp_path / "pred"))
    # v1 visual: TP 3, FN 1 -> 6/7; v2 scores 1. Event level: IoU 3/4 still matches -> 100.
    assert out["segment_visual"] == 100 * (6 / 7 + 1) / 2 and out["event_visual"] == 100.0


def test_eval_avvp_custom_vocabulary_and_errors(tmp_path, monkeypatch, capsys):
    ann, _, _ = _avvp_folder(tmp_path)
    pred = tmp_path / "pred"
    write_avvp_events(pred / "audio.csv", [AVVPEvent("v1_0_10", 0, 4, "duck")])
    write_avvp_events(pred / "visual.csv", [])
    code, _, err = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(pred))
    assert code == 2 and "unknown class 'duck'" in err
    write_avvp_classes(ann / "classes.txt", ["Speech", "Dog", "Cat", "duck"])
    code, out, _ = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(pred),
                       "--classes", str(ann / "classes.txt"))
    # v1 audio: Speech missed and duck wrong (F 0 and 0), v2 has nothing (1.0): the mean over videos is 50.
    assert code == 0 and out["segment_audio"] == 50.0
    (pred / "visual.csv").unlink()
    code, _, err = run(monkeypatch, capsys, "avvp", "--annotations", str(ann), "--predictions", str(pred),
                       "--classes", str(ann / "classes.txt"))
    assert code == 2 and "visual.csv" in err


# ------------------------------------------------------------------------------------------------------ localisation

def test_eval_sound_localization_vggss_and_flickr(tmp_path, monkeypatch, capsys):
    records = [VGGSSAnnotation("a_000001", "dog barking", ((0.1, 0.2, 0.6, 0.9),)),
               VGGSSAnnotation("b_000002", "cat", ((0.0, 0.0, 0.3, 0.3), (0.5, 0.5, 1, 1)))]
    write_vggss(tmp_path / "vggss.json", records)
    np.savez(tmp_path / "gt.npz", **{r.file: vggss_gt_map(r.bboxes) for r in records})
    code, out, _ = run(monkeypatch, capsys, "sound-localization", "--annotations", str(tmp_path / "vggss.json"),
                       "--predictions", str(tmp_path / "gt.npz"))
    assert code == 0 and out == {"ciou": 100.0, "auc": 100.0, "mean_ciou": 100.0}
    np.savez(tmp_path / "bad.npz", a_000001=np.zeros((14, 14)), unknown=np.zeros((14, 14)))
    code, _, err = run(monkeypatch, capsys, "sound-localization", "--annotations", str(tmp_path / "vggss.json"),
                       "--predictions", str(tmp_path / "bad.npz"))
    assert code == 2 and "'unknown' has no annotation" in err

    flickr = tmp_path / "Annotations"
    write_flickr_dir(flickr, [FlickrAnnotation("10000130166", (FlickrBox(0, 0, 128, 256, "1"),
                                                               FlickrBox(0, 0, 128, 256, "2")))])
    low_res = np.zeros((14, 14), dtype=np.float32)
    low_res[:, :7] = 1  # resized: columns < 112 hold the map's maximum or more than the median
    np.savez(tmp_path / "flickr.npz", **{"10000130166": low_res})
    code, out, _ = run(monkeypatch, capsys, "sound-localization", "--annotations", str(flickr),
                       "--predictions", str(tmp_path / "flickr.npz"))
    assert code == 0 and out["ciou"] == 100.0
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    code, _, err = run(monkeypatch, capsys, "sound-localization", "--annotations", str(flickr),
                       "--predictions", str(tmp_path / "broken.npz"))
    assert code == 2 and "readable .npz" in err


# ------------------------------------------------------------------------------------------------------ AVQA

def test_eval_avqa(tmp_path, monkeypatch, capsys):
    records = [AVQARecord("1", 7, ("Audio-Visual", "Existential"), "Is the <Object> playing?", ("violin",), "yes"),
               AVQARecord("1", 7, ("Audio-Visual", "Existential"), "Is the <Object> playing?", ("violin",), "yes"),
               AVQARecord("2", 8, ("Visual", "Counting"), "How many instruments?", (), "two")]
    write_avqa(tmp_path / "avqa-test.json", records)
    (tmp_path / "gt.json").write_text(json.dumps({str(r.question_id): r.anser for r in records}))
    code, out, _ = run(monkeypatch, capsys, "avqa", "--annotations", str(tmp_path / "avqa-test.json"),
                       "--predictions", str(tmp_path / "gt.json"))
    assert code == 0 and out == {"Visual/Counting": 100.0, "Visual/Avg": 100.0, "Audio-Visual/Existential": 100.0,
                                 "Audio-Visual/Avg": 100.0, "Overall": 100.0}
    (tmp_path / "p.json").write_text(json.dumps({"7": "yes", "8": "Two"}))
    _, out, _ = run(monkeypatch, capsys, "avqa", "--annotations", str(tmp_path / "avqa-test.json"),
                    "--predictions", str(tmp_path / "p.json"))
    assert out["Overall"] == 100 * 2 / 3 and out["Visual/Counting"] == 0.0
    (tmp_path / "p.json").write_text(json.dumps({"7": 1}))
    code, _, err = run(monkeypatch, capsys, "avqa", "--annotations", str(tmp_path / "avqa-test.json"),
                       "--predictions", str(tmp_path / "p.json"))
    assert code == 2 and "must be a string" in err
