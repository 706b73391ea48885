"""Vision-language and retrieval scene builders: official files read back by xmodal's readers equal the scenes'
ground truth, and the ground truth fed back as predictions scores 100 through ``xmodal eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_run import eval_output, first_json, read_scenes

from xmodal.data.benchmarks import (
    audiocaps,
    charades_sta,
    clotho,
    hc_stvg,
    karpathy,
    msrvtt,
    refcoco,
    snli_ve,
)
from xmodal.data.synth import scene_benchmarks_vl as vl
from xmodal.data.synth import scene_language, scenes

pytestmark = pytest.mark.slow  # each build renders real frames, clips or soundtracks


def _eval(*args: str) -> dict:
    return first_json(eval_output(*args))


def _frame(scene: dict, t: float) -> int:
    return round(t * scene["config"]["fps"])


def test_refcoco_refs_point_at_their_objects_and_score_100(tmp_path):
    root = vl.build_refcoco(tmp_path / "refcoco", n=5, seed=1, workers=2)
    refs = refcoco.read_refs(root / "refs(unc).p")
    import pickle  # our own file: the raw records carry exactly the refer loader's keys

    raw = pickle.loads((root / "refs(unc).p").read_bytes())
    assert {frozenset(r) for r in raw} == {frozenset({"sent_ids", "file_name", "ann_id", "ref_id", "image_id",
                                                      "split", "sentences", "category_id"})}
    assert {frozenset(s) for r in raw for s in r["sentences"]} == {frozenset({"tokens", "raw", "sent_id", "sent"})}
    inst = refcoco.read_instances(root / "instances.json")
    anns = {a.id: a for a in inst.annotations}
    images = {im.id: im for im in inst.images}
    truth = read_scenes(root)
    assert "train" in {r.split for r in refs} <= {"train", "val", "testA", "testB"}
    for r in refs:
        scene_json = truth[images[r.image_id].file_name.removesuffix(".jpg")]
        obj_id = r.ann_id % 100
        x0, y0, x1, y1 = scene_json["boxes"][str(obj_id)][_frame(scene_json, vl.REFERENCE_TIME)]
        ann = anns[r.ann_id]
        assert ann.bbox == (x0, y0, x1 - x0, y1 - y0)
        xs, ys = ann.segmentation[0][0::2], ann.segmentation[0][1::2]  # the outline lies in the box
        assert x0 <= min(xs) and max(xs) <= x1 and y0 <= min(ys) and max(ys) <= y1
        assert 0 < ann.area <= (x1 - x0) * (y1 - y0)
        scene = scenes.generate_scene(scene_json["seed"], scene_json["index"], scene_json["split"],
                                      vl.REFCOCO_CONFIG)
        for s in r.sentences:  # every expression resolves to exactly its object in the frame
            assert scene_language.resolve_expression(s.raw, scene, vl.REFERENCE_TIME) == [obj_id], s.raw
    again = vl.build_refcoco(tmp_path / "again", n=5, seed=1, workers=1)  # one process instead of two
    for name in ("refs(unc).p", "instances.json", "scenes.jsonl", "card.json"):
        assert (root / name).read_bytes() == (again / name).read_bytes(), name
    for split in ("testA", "testB"):
        chosen = refcoco.select_split(refs, split)
        if not chosen:
            continue
        pred = tmp_path / f"{split}.json"
        pred.write_text(json.dumps({str(s.sent_id): list(anns[r.ann_id].bbox) for r in chosen for s in r.sentences}))
        scores = _eval("grounding", "--refs", str(root / "refs(unc).p"), "--instances", str(root / "instances.json"),
                       "--predictions", str(pred), "--split", split)
        assert scores["accuracy"] == 100.0


def test_charades_sta_moments_are_action_spans_and_score_100(tmp_path):
    root = vl.build_charades_sta(tmp_path / "sta", n=4, seed=2, workers=1)
    truth = read_scenes(root)
    queries = charades_sta.read_charades_sta(root / "charades_sta_test.txt")
    assert queries
    for q in queries:
        spans = [[a["start"], a["end"]] for a in truth[q.video]["actions"]]
        spans += [iv for o in truth[q.video]["objects"] for iv in o["visible"]]
        assert [q.start, q.end] in spans
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"video": q.video, "segments": [[q.start, q.end]]} for q in queries]))
    scores = _eval("temporal-grounding", "--annotations", str(root / "charades_sta_test.txt"), "--predictions",
                   str(pred))
    assert scores["R@1,IoU=0.7"] == 100.0 and scores["mIoU"] == 100.0


def test_snli_ve_labels_are_balanced_per_template_and_score_100(tmp_path):
    root = vl.build_snli_ve(tmp_path / "snli", n=10, seed=3, workers=2)
    pairs = snli_ve.read_snli_ve(root / "snli_ve_train.jsonl")

    def template(text: str) -> str:
        return "count" if text.startswith("There are at least") else "exists" if text.startswith("There is") \
            else "relation"

    counts: dict[str, dict[str, int]] = {}
    for p in pairs:
        per = counts.setdefault(template(p.hypothesis), {})
        per[p.gold_label] = per.get(p.gold_label, 0) + 1
    assert counts
    for per in counts.values():  # every template kept under all three labels, equally often
        assert set(per) == set(snli_ve.LABELS) and len(set(per.values())) == 1, counts
    test = snli_ve.read_snli_ve(root / "snli_ve_test.jsonl")
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({p.pair_id: p.gold_label for p in test}))
    assert _eval("entailment", "--annotations", str(root / "snli_ve_test.jsonl"), "--predictions",
                 str(pred))["accuracy"] == 100.0


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_hc_stvg_tubes_are_the_referents_boxes_and_score_100(tmp_path, layout):
    root = vl.build_hc_stvg(tmp_path / "stvg", n=6, seed=4, workers=2, layout=layout)
    truth = read_scenes(root)
    held_out = {"v1": "anno_v1/test.json", "v2": "anno_v2/valv2.json"}[layout]
    raw = json.loads((root / held_out).read_text())
    keys = {"v1": {"img_num", "width", "height", "st_frame", "st_time", "ed_time", "bbox", "caption"},
            "v2": {"img_num", "img_size", "st_frame", "st_time", "ed_time", "bbox", "English"}}[layout]
    assert raw and all(set(r) == keys for r in raw.values())
    assert sorted(p.name for p in (root / layout.replace("v", "anno_v")).iterdir()) == sorted(
        {"v1": ["train.json", "val.json", "test.json"], "v2": ["trainv2.json", "valv2.json"]}[layout])
    videos = hc_stvg.read_hc_stvg(root / held_out)
    paths = hc_stvg.video_paths(root / "video")  # video/<folder>/<id>.mp4, as TubeDETR's preprocessing walks it
    assert len(videos) == len(raw)
    pred = {}
    for v in videos:
        scene = truth[v.key.removesuffix(".mp4")]
        assert v.img_num == len(scene["boxes"]["0"]) and paths[v.key.removesuffix(".mp4")].is_file()
        assert (v.width, v.height) == (scene["config"]["width"], scene["config"]["height"])
        boxes = {}
        for k, (x, y, w, h) in enumerate(v.bbox):
            frame = v.st_frame + k
            assert any(b == [x, y, x + w, y + h] for b in (bs[frame] for bs in scene["boxes"].values()))
            boxes[str(frame)] = [x, y, x + w, y + h]
        pred[v.key] = {"boxes": boxes}
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    scores = _eval("stvg", "--annotations", str(root / held_out), "--predictions", str(tmp_path / "pred.json"))
    assert scores["m_vIoU"] == 100.0 and scores["m_tIoU"] == 100.0


def _runs(xs: list, sign: int, min_frames: int) -> list[tuple[int, int]]:
    """[first, last] frames of every run of strictly monotone x (sign -1: leftwards) over at least
    ``min_frames`` steps; None (hidden) ends a run."""
    out, start = [], None
    for i in range(1, len(xs) + 1):
        step = i < len(xs) and xs[i] is not None and xs[i - 1] is not None and (xs[i] - xs[i - 1]) * sign > 0
        if step and start is None:
            start = i - 1
        if not step and start is not None:
            if i - 1 - start >= min_frames:
                out.append((start, i - 1))
            start = None
    return out


def test_hc_stvg_referents_are_told_apart_only_by_their_action():
    """Read from each scene's per-frame boxes (as scenes.jsonl holds them) alone: the referent's class has
    several objects, all of them move, and the k-th run of the named motion among the class's objects (ordered
    by start) is the tube's. The views are those of the builder, without rendering the clips."""
    results = [vl._stvg_view(scenes.generate_scene(2, i, "train", vl.STVG_CONFIG), {}) for i in range(40)]
    pairs = [(r["video"], r["scene"]) for r in results if r["video"]]
    assert len(pairs) >= 24  # most clips have a referent of this kind
    checked = 0
    for v, scene in pairs:
        name, action = v.caption.rstrip(".").removeprefix("The ").split(" that ")
        words = action.split(" ")
        cls = scene_language._SYNONYM[name]
        same = [o for o in scene["objects"] if o["cls"] == cls]
        assert len(same) >= 2 and all(o["motion"]["kind"] == "bounce" for o in scene["objects"])
        assert len(v.bbox) <= vl.STVG_MAX_SPAN * v.img_num and 0 < len(v.bbox) < v.img_num
        k = scene_language.ORDINALS.index(words[-2]) if words[-1] == "time" else 0
        if "moves to the" in v.caption:
            sign = -1 if "to the left" in v.caption else 1
            runs = sorted((run[0], o["id"]) for o in same for run in _runs(
                [None if b is None else b[0] for b in scene["boxes"][str(o["id"])]], sign, 3))
            assert len(runs) == 1 or words[-1] == "time", (v.caption, runs)
            start, obj = runs[k]
            assert start == v.st_frame, (v.caption, runs)
            x0, y0, _, _ = v.bbox[0]
            assert scene["boxes"][str(obj)][v.st_frame][:2] == [x0, y0]
            checked += 1
        else:  # growing: the box's height changes (size and rotation are fixed otherwise)
            assert "grows bigger" in v.caption
            starts = []
            for o in same:
                hs = [(f, b[3] - b[1]) for f, b in enumerate(scene["boxes"][str(o["id"])]) if b is not None]
                changes = [f for (_, h0), (f, h1) in zip(hs, hs[1:]) if h1 != h0]
                if changes:
                    starts.append((changes[0], o["id"]))
            assert len(starts) == 1 or words[-1] == "time", (v.caption, starts)
            obj = sorted(starts)[k][1]
            x0, y0, w, h = v.bbox[-1]
            assert scene["boxes"][str(obj)][v.st_frame + len(v.bbox) - 1] == [x0, y0, x0 + w, y0 + h]
            assert v.bbox[-1][3] > v.bbox[0][3]  # the tube's box gets taller
        others = [o for o in same if o["id"] != obj]  # another object of the class is on screen meanwhile
        assert any(scene["boxes"][str(o["id"])][f] is not None for o in others
                   for f in range(v.st_frame, v.st_frame + len(v.bbox)))
    assert checked >= 5


def test_hard_negative_twins_differ_in_one_respect_that_captions_state():
    rng = np.random.default_rng(0)
    seen_kinds = set()
    for i in range(1, 40, 2):
        base = scenes.generate_scene(7, i - 1, "test", vl.RETRIEVAL_CONFIG)
        twin = vl.hard_negative_twin(scenes.generate_scene(7, i, "test", vl.RETRIEVAL_CONFIG))
        changed = {k for a, b in zip(base.objects, twin.objects) for k in ("tint", "motion", "sounding")
                   if getattr(a, k) != getattr(b, k)}
        assert len(changed) == 1, changed
        seen_kinds |= changed
        if changed == {"sounding"}:  # the order of first sounds flips, and so do the audio captions
            assert scene_language.audio_captions(base, rng)[0] != scene_language.audio_captions(twin, rng)[0]
        if changed == {"motion"}:  # mirrored: every box reflected about the vertical axis
            for a, b in zip(base.objects, twin.objects):
                ba, bb = scenes.box_at(a, 0.0, base.config), scenes.box_at(b, 0.0, twin.config)
                if ba is not None and a.grow is None:
                    assert bb[2] - bb[0] == ba[2] - ba[0] and abs(bb[0] - (128 - ba[2])) <= 1
    assert seen_kinds == {"tint", "motion", "sounding"}


def _identity_similarity(tmp_path, annotations, protocol: str) -> dict:
    from xmodal.metrics.retrieval_protocols import read_layout

    layout = read_layout(annotations, protocol)
    sim = np.zeros((len(layout.caption_item), layout.n_items), np.float32)
    sim[np.arange(len(layout.caption_item)), layout.caption_item] = 1.0
    np.save(tmp_path / f"{protocol}.npy", sim)
    return _eval("retrieval", "--annotations", str(annotations), "--similarity", str(tmp_path / f"{protocol}.npy"),
                 "--protocol", protocol)


def test_retrieval_builders_read_back_with_hard_negative_twins(tmp_path):
    root = vl.build_coco_karpathy(tmp_path / "coco", n=8, seed=5, workers=2)
    data = karpathy.read_karpathy(root / "dataset_coco.json")
    assert all(len(im.sentences) == 5 for im in data.images)
    truth = list(read_scenes(root).values())
    twin_a, twin_b = truth[0], truth[1]  # clip 1 is clip 0 with one object's colour changed
    diff = [(a["tint"], b["tint"]) for a, b in zip(twin_a["objects"], twin_b["objects"]) if a != b]
    assert len(diff) == 1 and diff[0][0] != diff[0][1]
    assert all(v >= 99.999 for k, v in _identity_similarity(tmp_path, root / "dataset_coco.json", "coco-5k").items()
               if "R@1" in k or "R@10" in k)

    root = vl.build_msrvtt(tmp_path / "msrvtt", n=4, seed=5, workers=1)
    data = msrvtt.read_msrvtt_data(root / "MSRVTT_data.json")
    pairs = msrvtt.read_msrvtt_1ka(root / "MSRVTT_JSFUSION_test.csv")
    assert all((root / "videos" / "all" / f"{v.video_id}.mp4").is_file() for v in data.videos)
    assert {p.video_id for p in pairs} == {v.video_id for v in data.videos if v.split == "test"}
    assert _identity_similarity(tmp_path, root / "MSRVTT_JSFUSION_test.csv", "msrvtt-1ka")["t2v_R@1"] == 100.0


def test_audio_caption_builders_read_back(tmp_path):
    root = vl.build_audiocaps(tmp_path / "audiocaps", n=4, seed=6, workers=1)
    train = audiocaps.read_audiocaps(root / "train.csv")
    test = audiocaps.read_audiocaps(root / "test.csv")
    assert len(train) == len({c.youtube_id for c in train}) and len(test) == 5 * len({c.youtube_id for c in test})
    assert all((root / "audio" / f"{c.youtube_id}.wav").is_file() for c in train + test)
    scores = _identity_similarity(tmp_path, root / "test.csv", "audiocaps")
    assert all(v == 100.0 for k, v in scores.items() if "R@1" in k)
    root = vl.build_clotho(tmp_path / "clotho", n=3, seed=6, workers=1)
    clips = clotho.read_clotho(root / "clotho_captions_evaluation.csv")
    assert clips and all(len(set(c.captions)) == 5 for c in clips)
    assert all((root / "evaluation" / c.file_name).is_file() for c in clips)
    scores = _identity_similarity(tmp_path, root / "clotho_captions_evaluation.csv", "clotho")
    assert all(v == 100.0 for k, v in scores.items() if "R@1" in k)
