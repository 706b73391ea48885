"""``xmodal eval grounding | temporal-grounding | entailment | stvg | retrieval`` on files in the official
layouts: the ground truth fed back as predictions scores 100, hand-worked predictions score what they should,
and a malformed file exits with status 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from cli_run import eval_json

from xmodal.cli import main
from xmodal.data.benchmarks import (
    audiocaps,
    charades_sta,
    clotho,
    hc_stvg,
    karpathy,
    msrvtt,
    refcoco,
    snli_ve,
    vidstg,
)


def exit_status(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["xmodal", "eval", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code


# ---- grounding -----------------------------------------------------------------------------------------------


@pytest.fixture
def refcoco_files(tmp_path):
    def sent(i):
        return refcoco.RefSentence(i, f"thing {i}", f"Thing {i}", ["thing", str(i)])

    refs = [refcoco.RefRecord(1, 10, 1, 1, "a.jpg", "testA", [sent(100), sent(101)]),
            refcoco.RefRecord(2, 11, 1, 1, "a.jpg", "testB", [sent(102)]),
            refcoco.RefRecord(3, 12, 2, 1, "b.jpg", "testA", [sent(103)])]
    anns = [refcoco.CocoAnnotation(10, 1, 1, (0.0, 0.0, 10.0, 10.0), 100.0),
            refcoco.CocoAnnotation(11, 1, 1, (20.0, 20.0, 5.0, 5.0), 25.0),
            refcoco.CocoAnnotation(12, 2, 1, (3.5, 4.0, 30.0, 12.0), 360.0)]
    inst = refcoco.CocoInstances([refcoco.CocoImage(1, "a.jpg", 64, 64), refcoco.CocoImage(2, "b.jpg", 64, 64)],
                                 anns, [refcoco.CocoCategory(1, "person")])
    refcoco.write_refs(tmp_path / "refs(unc).p", refs)
    refcoco.write_instances(tmp_path / "instances.json", inst)
    return tmp_path / "refs(unc).p", tmp_path / "instances.json"


def test_eval_grounding(tmp_path, refcoco_files, monkeypatch):
    refs, inst = refcoco_files
    pred = tmp_path / "pred.json"
    gt = {"100": [0, 0, 10, 10], "101": [0, 0, 10, 10], "102": [20, 20, 5, 5], "103": [3.5, 4.0, 30, 12]}
    pred.write_text(json.dumps(gt))
    args = ["grounding", "--refs", str(refs), "--instances", str(inst), "--predictions", str(pred)]
    assert eval_json(*args, "--split", "testA") == {"accuracy": 100.0, "n": 3}
    # sentence 101 at IoU 1/7 and sentence 103 missing: one hit of three
    pred.write_text(json.dumps({"100": [0, 0, 10, 10], "101": [5, 5, 10, 10], "102": [20, 20, 5, 5]}))
    assert eval_json(*args, "--split", "testA") == {"accuracy": 100 / 3, "n": 3}
    assert eval_json(*args, "--split", "testB") == {"accuracy": 100.0, "n": 1}
    assert eval_json(*args, "--split", "test-u") == {"accuracy": 50.0, "n": 4}  # RefCOCOg's name for "test"
    pred.write_text(json.dumps({"100": [0, 0, 10]}))
    assert exit_status(monkeypatch, *args, "--split", "testA") == 2
    pred.write_text(json.dumps({"999": [0, 0, 10, 10]}))
    assert exit_status(monkeypatch, *args, "--split", "testA") == 2
    pred.write_text('{"100": [0, 0, NaN, 10]}')  # Python's json would read it
    assert exit_status(monkeypatch, *args, "--split", "testA") == 2
    pred.write_text('{"100": [0, 0, 10, 10], "0100": [0, 0, 10, 10]}')
    assert exit_status(monkeypatch, *args, "--split", "testA") == 2
    pred.write_text("{not json")
    assert exit_status(monkeypatch, *args, "--split", "testA") == 2


# ---- temporal grounding ----------------------------------------------------------------------------------------


def test_eval_temporal_grounding(tmp_path, monkeypatch):
    queries = [charades_sta.MomentQuery("AO8RW", 0.0, 6.9, "a person is putting a book on a shelf."),
               charades_sta.MomentQuery("3MSZA", 24.3, 30.4, "person turn a light on."),
               charades_sta.MomentQuery("3MSZA", 1.2, 8.8, "a person opens a door.")]
    ann = tmp_path / "charades_sta_test.txt"
    charades_sta.write_charades_sta(ann, queries)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"video": q.video, "segments": [[q.start, q.end]], "scores": [1.0]}
                                for q in queries]))
    args = ["temporal-grounding", "--annotations", str(ann), "--predictions", str(pred)]
    for extra in ([], ["--nms"]):
        out = eval_json(*args, *extra)
        assert list(out) == ["R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "R@5,IoU=0.3", "R@5,IoU=0.5",
                             "R@5,IoU=0.7", "mIoU"]
        assert all(v == 100.0 for v in out.values())
    # one query ranks a disjoint segment first and the true one second: R@1 two of three, R@5 all
    entries = json.loads(pred.read_text())
    entries[2] = {"video": "3MSZA", "segments": [[20.0, 25.0], [1.2, 8.8]], "scores": [0.2, 0.9]}
    pred.write_text(json.dumps(entries))
    plain = eval_json(*args)
    assert plain["R@1,IoU=0.5"] == 200 / 3 and plain["R@5,IoU=0.5"] == 100.0 and plain["mIoU"] == 200 / 3
    assert eval_json(*args, "--nms")["R@1,IoU=0.5"] == 100.0  # NMS ranks by score
    for e in entries:
        del e["scores"]
    pred.write_text(json.dumps(entries))
    assert exit_status(monkeypatch, *args, "--nms") == 2
    pred.write_text(json.dumps(entries[:2]))
    assert exit_status(monkeypatch, *args) == 2
    entries[0]["video"] = "WRONG"
    pred.write_text(json.dumps(entries))
    assert exit_status(monkeypatch, *args) == 2


def test_eval_temporal_grounding_activitynet(tmp_path):
    queries = [charades_sta.MomentQuery("v_QOlSCBRmfWY", 0.83, 19.86, "A young woman is seen.", 82.73),
               charades_sta.MomentQuery("v_QOlSCBRmfWY", 17.37, 60.81, "She dances.", 82.73)]
    ann = tmp_path / "val_1.json"
    charades_sta.write_activitynet_captions(ann, queries)
    pred = tmp_path / "pred.json"
    # the second query's top-1 [17.37, 39.09] covers half of the moment: TALL IoU 0.5000000000000001, a hit at 0.5, not 0.7
    pred.write_text(json.dumps([{"video": "v_QOlSCBRmfWY", "segments": [[0.83, 19.86]]},
                                {"video": "v_QOlSCBRmfWY", "segments": [[17.37, 39.09]]}]))
    out = eval_json("temporal-grounding", "--annotations", str(ann), "--predictions", str(pred))
    assert out["R@1,IoU=0.5"] == 100.0 and out["R@1,IoU=0.7"] == 50.0


# ---- entailment -------------------------------------------------------------------------------------------------


def test_eval_entailment(tmp_path, monkeypatch):
    pairs = [snli_ve.EntailmentPair(f"1.jpg#0r{i}", "1.jpg", f"hypothesis {i}", label)
             for i, label in enumerate(["entailment", "neutral", "contradiction", "neutral"])]
    ann = tmp_path / "snli_ve_test.jsonl"
    snli_ve.write_snli_ve(ann, pairs)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({p.pair_id: p.gold_label for p in pairs}))
    args = ["entailment", "--annotations", str(ann), "--predictions", str(pred)]
    assert eval_json(*args) == {"accuracy": 100.0}
    pred.write_text(json.dumps({"1.jpg#0r0": "entailment", "1.jpg#0r1": "contradiction"}))
    assert eval_json(*args) == {"accuracy": 25.0}
    pred.write_text(json.dumps({"1.jpg#0r0": "yes"}))
    assert exit_status(monkeypatch, *args) == 2


# ---- STVG -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_eval_stvg_hcstvg(tmp_path, monkeypatch, version):
    videos = [hc_stvg.HCSTVGVideo("50_TM5MPJIq1Is.mp4", 500, 640, 360, 100, 4.0, 6.0, "the man in black sits",
                                  [[10 + i, 20, 50, 80] for i in range(50)]),
              hc_stvg.HCSTVGVideo("7_abc.mp4", 600, 640, 360, 0, 0.0, 2.0, "the woman turns",
                                  [[0, 0, 640, 360]] * 60)]  # a tube touching every border of the image
    ann = tmp_path / "test.json"
    hc_stvg.write_hc_stvg(ann, videos, version=version)
    pred = tmp_path / "pred.json"
    gt = {v.key: {"boxes": {str(v.st_frame + i): [x, y, x + w, y + h] for i, (x, y, w, h) in enumerate(v.bbox)}}
          for v in videos}
    pred.write_text(json.dumps(gt))
    args = ["stvg", "--annotations", str(ann), "--predictions", str(pred)]
    assert eval_json(*args) == {"m_tIoU": 100.0, "m_vIoU": 100.0, "vIoU@0.3": 100.0, "vIoU@0.5": 100.0}
    del gt["7_abc.mp4"]  # a clip without predictions scores 0
    pred.write_text(json.dumps(gt))
    assert eval_json(*args) == {"m_tIoU": 50.0, "m_vIoU": 50.0, "vIoU@0.3": 50.0, "vIoU@0.5": 50.0}
    gt["50_TM5MPJIq1Is.mp4"]["boxes"]["100"] = [1, 2, 3]
    pred.write_text(json.dumps(gt))
    assert exit_status(monkeypatch, *args) == 2
    pred.write_text(json.dumps({"unknown.mp4": {"boxes": {}}}))
    assert exit_status(monkeypatch, *args) == 2


def test_eval_stvg_vidstg(tmp_path, monkeypatch):
    video = vidstg.VidSTGVideo("2401075277", 200, 25.0, 640, 480, (0, 200), (50, 100), {0: "adult", 1: "dog"},
                               [vidstg.VidSTGSentence(0, "adult", "who walks the dog?")],
                               [vidstg.VidSTGSentence(1, "dog", "a dog follows an adult.")])
    track = {f: (1.5 + f, 2.0, 60.25 + f, 80.0) for f in range(40, 120)}
    vidor = vidstg.VidORVideo("2401075277", "1025/2401075277.mp4", 200, 25.0, 640, 480, {0: "adult", 1: "dog"},
                              {0: track, 1: {f: (300.0, 300.0, 340.0, 330.0) for f in range(50, 100)}})
    ann = tmp_path / "test_annotations.json"
    vidstg.write_vidstg(ann, [video])
    vidstg.write_vidor(tmp_path / "vidor", vidor)
    pred = tmp_path / "pred.json"
    preds = {"0": {"boxes": {str(f): list(track[f]) for f in range(50, 100)}},
             "1": {"boxes": {str(f): [300.0, 300.0, 340.0, 330.0] for f in range(50, 100)}}}
    pred.write_text(json.dumps(preds))
    args = ["stvg", "--format", "vidstg", "--annotations", str(ann), "--predictions", str(pred)]
    full = {"m_tIoU": 100.0, "m_vIoU": 100.0, "vIoU@0.3": 100.0, "vIoU@0.5": 100.0}
    assert eval_json(*args, "--vidor", str(tmp_path / "vidor")) == {"declarative": full, "interrogative": full}
    assert exit_status(monkeypatch, *args) == 2  # no --vidor


# ---- retrieval -------------------------------------------------------------------------------------------------


def _karpathy(tmp_path, n_images: int, name: str = "coco"):
    images = [karpathy.KarpathyImage(i, f"{i}.jpg", "test",
                                     [karpathy.KarpathySentence(5 * i + j, f"caption {i} {j}", []) for j in range(5)])
              for i in range(n_images)]
    images.append(karpathy.KarpathyImage(n_images, "train.jpg", "train", []))
    path = tmp_path / f"dataset_{name}.json"
    karpathy.write_karpathy(path, karpathy.KarpathyDataset(name, images))
    return path


def test_eval_retrieval_karpathy(tmp_path, monkeypatch):
    ann = _karpathy(tmp_path, 8, "flickr30k")
    caption_item = np.repeat(np.arange(8), 5)
    perfect = (caption_item[:, None] == np.arange(8)[None, :]).astype(np.float32)  # (40 captions, 8 images)
    sim = tmp_path / "sim.npy"
    np.save(sim, perfect)
    out = eval_json("retrieval", "--annotations", str(ann), "--similarity", str(sim))
    assert out["t2i_R@1"] == 100.0 and out["i2t_R@1"] == 100.0 and out["t2i_MedR"] == 1.0
    assert set(out) == {f"{d}_{k}" for d in ("t2i", "i2t") for k in ("R@1", "R@5", "R@10", "MedR", "MeanR")}
    np.save(sim, perfect.T)  # (images, captions) is recognised by its shape
    assert eval_json("retrieval", "--annotations", str(ann), "--similarity", str(sim)) == out
    np.save(sim, np.zeros((40, 8), dtype=np.float32))  # a constant model
    flat = ["retrieval", "--annotations", str(ann), "--similarity", str(sim)]
    assert eval_json(*flat, "--ties", "optimistic")["t2i_R@1"] == 100.0  # nothing scores strictly higher
    pessimistic = eval_json(*flat)  # the default: ties count against the model, so a constant model ranks last
    assert pessimistic == eval_json(*flat, "--ties", "pessimistic")
    assert pessimistic["t2i_R@1"] == 0.0 and pessimistic["t2i_MeanR"] == 8.0 and pessimistic["i2t_MeanR"] == 36.0
    # any-of-five with ties: image 0's best caption (0.5) ties two wrong ones and one wrong scores 0.9
    scores = perfect.copy()
    scores[:, 0] = 0.0
    scores[[1, 2, 3], 0] = [0.5, 0.3, 0.2]  # its captions 0-4 (caption 0 and 4 at 0)
    scores[[5, 8], 0] = 0.5
    scores[6, 0] = 0.9
    np.save(sim, scores)
    strict, pess = eval_json(*flat, "--ties", "optimistic"), eval_json(*flat)
    # ranks of images 0..7 in i2t: optimistic 1 (only 0.9 above), pessimistic 3 (0.9, 0.5, 0.5); others 0
    assert strict["i2t_MeanR"] == pytest.approx(1 + 1 / 8) and pess["i2t_MeanR"] == pytest.approx(1 + 3 / 8)
    assert strict["i2t_R@1"] == 87.5 and pess["i2t_R@1"] == 87.5 and strict["i2t_R@5"] == 100.0
    np.save(sim, np.zeros((40, 8), dtype=np.float32))
    np.save(sim, np.zeros((40, 9)))
    assert exit_status(monkeypatch, *flat) == 2
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert exit_status(monkeypatch, "retrieval", "--annotations", str(ann), "--similarity",
                       str(tmp_path / "bad.npy")) == 2


def test_eval_retrieval_coco_1k_folds(tmp_path):
    ann = _karpathy(tmp_path, 2000)
    caption_item = np.repeat(np.arange(2000), 5)
    sim = (caption_item[:, None] == np.arange(2000)[None, :]).astype(np.float32)
    sim[:5000, 1000:] = 2.0  # fold 1's captions prefer fold 2's images: only the 5k protocol sees that
    path = tmp_path / "sim.npy"
    np.save(path, sim)
    args = ["retrieval", "--annotations", str(ann), "--similarity", str(path)]
    assert eval_json(*args, "--protocol", "coco-1k")["t2i_R@1"] == 100.0
    assert eval_json(*args, "--protocol", "coco-5k")["t2i_R@1"] == 50.0


def test_eval_retrieval_video_and_audio(tmp_path):
    pairs = [msrvtt.Msrvtt1kAPair(f"ret{i}", f"msr{i}", f"video{i}", f"sentence {i}") for i in range(6)]
    ann = tmp_path / "MSRVTT_JSFUSION_test.csv"
    msrvtt.write_msrvtt_1ka(ann, pairs)
    sim = tmp_path / "sim.npy"
    np.save(sim, np.eye(6)[:, [1, 0, 2, 3, 4, 5]] + 0.5 * np.eye(6))  # sentences 0 and 1 prefer each other's video
    out = eval_json("retrieval", "--annotations", str(ann), "--similarity", str(sim))
    # ranks 1, 1, 0, 0, 0, 0 in both directions
    assert out["t2v_R@1"] == pytest.approx(400 / 6, abs=1e-12) and out["v2t_R@1"] == out["t2v_R@1"]
    assert out["t2v_R@5"] == 100.0 and out["t2v_MedR"] == 1.0
    assert out["t2v_MeanR"] == pytest.approx(1 + 2 / 6, abs=1e-12)

    clips = [clotho.ClothoClip(f"{i}.wav", [f"c{i}{j}" for j in range(5)]) for i in range(4)]
    cl = tmp_path / "clotho_captions_evaluation.csv"
    clotho.write_clotho(cl, clips)
    np.save(sim, (np.repeat(np.arange(4), 5)[:, None] == np.arange(4)).astype(float))
    out = eval_json("retrieval", "--annotations", str(cl), "--similarity", str(sim))
    assert out["t2a_R@1"] == 100.0 and out["a2t_R@1"] == 100.0 and out["t2a_mAP@10"] == 100.0
    scores = np.repeat(np.arange(4), 5)[:, None] == np.arange(4)
    scores = scores.astype(float) + np.zeros((20, 4))
    scores[0] = [0.0, 3.0, 2.0, 1.0]  # caption 0 finds its file at rank 4: AP@10 = 1/4
    np.save(sim, scores)
    out = eval_json("retrieval", "--annotations", str(cl), "--similarity", str(sim))
    assert out["t2a_mAP@10"] == pytest.approx(100 * (19 + 0.25) / 20, abs=1e-12) and out["t2a_R@1"] == 95.0

    caps = [audiocaps.AudioCapsCaption(i, "yt" + str(i % 3), 30, f"sound {i}") for i in range(9)]  # interleaved
    ac = tmp_path / "test.csv"
    audiocaps.write_audiocaps(ac, caps)
    np.save(sim, (np.arange(9)[:, None] % 3 == np.arange(3)).astype(float))
    out = eval_json("retrieval", "--annotations", str(ac), "--similarity", str(sim))
    assert out["t2a_R@1"] == 100.0 and out["a2t_R@1"] == 100.0
