"""Scene datasets in the official layouts of the audio-visual benchmarks: AVE, LLP (AVVP), VGG-SS,
Flickr-SoundNet and MUSIC-AVQA (``xmodal data build <name>-scenes --out DIR --n N --seed S --workers W``).

Each builder renders its clips with :mod:`xmodal.data.synth.scene_build`, writes the annotation files with the
writers of :mod:`xmodal.data.benchmarks` (the same modules whose readers load the real benchmark), the ground
truth of every scene (``scenes.jsonl``: graph, per-frame boxes, segment labels, actions) and a dataset card.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xmodal.data.benchmarks import ave, avvp, flickr_soundnet, music_avqa, vggss
from xmodal.data.synth import scene_questions, scenes, vocabulary
from xmodal.data.synth.scene_build import (
    ClipJob,
    make_jobs,
    register_scene_builder,
    run_jobs,
    scene_record,
    split_counts,
    write_card,
    write_scenes,
)
from xmodal.errors import ConfigError

AVE_CONFIG = scenes.SceneConfig(mode="event", min_objects=2, max_objects=4)
LLP_CONFIG = scenes.SceneConfig(min_objects=2, max_objects=4, p_silent=0.25, p_offscreen=0.25)
LOCALISATION_CONFIG = scenes.SceneConfig(mode="one_source", min_objects=2, max_objects=4, max_props=0,
                                         p_negative=0.1, motions=("static",))
FLICKR_CONFIG = replace(LOCALISATION_CONFIG, height=256, width=256, p_negative=0.0)
AVQA_CONFIG = scenes.SceneConfig(classes=vocabulary.INSTRUMENTS, min_objects=2, max_objects=4, repeat_class=0.35,
                                 max_props=0)
REFERENCE_TIME = 5.0  # the annotated frame of the localisation benchmarks: the middle of the 10-s clip


def ave_name(cls: str) -> str:
    return cls[0].upper() + cls[1:]  # "Alarm clock", as AVE spells classes


def avvp_name(cls: str) -> str:
    return ave_name(cls).replace(" ", "_")  # "Alarm_clock", as AVVP spells classes


# ---------------------------------------------------------------- AVE

def _ave_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    (target,) = [o for o in scene.objects if o.visible and o.sounding]
    av = scenes.segment_labels(scene)["av"]
    segs = [k for k, labels in enumerate(av) if target.cls in labels]
    if not segs or segs != list(range(segs[0], segs[-1] + 1)) or any(
            set(labels) - {target.cls} for labels in av):
        raise ConfigError(f"{scene.id}: the event-mode scene does not hold exactly one contiguous event")
    rec = ave.AVEAnnotation(ave_name(target.cls), scene.id, "good", segs[0], segs[-1] + 1)
    return {**scene_record(scene, info), "record": rec}


def build_ave(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1, features: bool = False) -> Path:
    """``AVE/<id>.mp4``, ``Annotations.txt`` (every clip) and ``trainSet.txt`` / ``valSet.txt`` /
    ``testSet.txt``: one audio-visual event per clip with background segments, visible silent objects and
    off-screen sounds of other classes. ``features``: also the HDF5 features AVE distributes
    (:func:`xmodal.tasks.ave.write_official_features`)."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, AVE_CONFIG, _ave_view, lambda sid: {"video": f"AVE/{sid}.mp4"})
    results = run_jobs(jobs, workers)
    ave.write_ave(out / "Annotations.txt", [r["record"] for r in results])
    for split, name in (("train", "trainSet.txt"), ("val", "valSet.txt"), ("test", "testSet.txt")):
        ave.write_ave(out / name, [r["record"] for r in results if r["split"] == split])
    write_scenes(out, results)
    files = ["Annotations.txt", "trainSet.txt", "valSet.txt", "testSet.txt", "AVE/<VideoID>.mp4", "scenes.jsonl"]
    if features:  # imported here: the features come from the encoders of the task layer
        from xmodal.tasks.ave import write_official_features

        write_official_features(out)
        files += ["features/audio_feature.h5", "features/visual_feature.h5"]
    write_card(out, "AVE", counts, AVE_CONFIG, files,
               "One audio-visual event per clip: one object (drawn on top) is seen and heard over one overlapping span; the other "
               "objects are of other classes and are either visible and silent or heard off screen. Segment t is "
               "the event when the event's object is both visible and sounding for more than half of it.")
    return out


# ---------------------------------------------------------------- LLP / AVVP

def _runs(rows: list[list[str]], filename: str) -> list[avvp.AVVPEvent]:
    """One event row per maximal run of consecutive segments holding a class."""
    out = []
    for cls in sorted({c for labels in rows for c in labels}):
        on = None
        for k in range(len(rows) + 1):
            inside = k < len(rows) and cls in rows[k]
            if inside and on is None:
                on = k
            elif not inside and on is not None:
                out.append(avvp.AVVPEvent(filename, on, k, avvp_name(cls)))
                on = None
    return out


def _llp_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    seg = scenes.segment_labels(scene)
    filename = f"{scene.id}_0_10"
    weak = sorted({avvp_name(c) for rows in (seg["audio"], seg["visual"]) for labels in rows for c in labels})
    return {**scene_record(scene, info), "weak": avvp.AVVPWeakLabel(filename, tuple(weak)),
            "audio": _runs(seg["audio"], filename), "visual": _runs(seg["visual"], filename)}


def build_llp(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1, features: bool = False) -> Path:
    """``LLP_dataset/video/<filename>.mp4``, ``AVVP_train.csv`` (weak labels only), ``AVVP_val_pd.csv``,
    ``AVVP_test_pd.csv``, ``AVVP_eval_audio.csv``, ``AVVP_eval_visual.csv`` (val and test clips) and
    ``classes.txt`` (the vocabulary, for ``--classes``). ``features``: also per-clip ``.npy`` features in LLP's
    layout (:func:`xmodal.tasks.avvp.write_official_features`)."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, LLP_CONFIG, _llp_view,
                         lambda sid: {"video": f"LLP_dataset/video/{sid}_0_10.mp4"})
    results = run_jobs(jobs, workers)
    by = {s: [r for r in results if r["split"] == s] for s in counts}
    avvp.write_avvp_weak(out / "AVVP_train.csv", [r["weak"] for r in by["train"]])
    avvp.write_avvp_weak(out / "AVVP_val_pd.csv", [r["weak"] for r in by["val"]])
    avvp.write_avvp_weak(out / "AVVP_test_pd.csv", [r["weak"] for r in by["test"]])
    dense = by["val"] + by["test"]
    avvp.write_avvp_events(out / "AVVP_eval_audio.csv", [e for r in dense for e in r["audio"]])
    avvp.write_avvp_events(out / "AVVP_eval_visual.csv", [e for r in dense for e in r["visual"]])
    avvp.write_avvp_classes(out / "classes.txt", [avvp_name(c) for c in LLP_CONFIG.classes])
    write_scenes(out, results)
    files = ["AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv", "AVVP_eval_audio.csv", "AVVP_eval_visual.csv",
             "classes.txt", "LLP_dataset/video/<filename>.mp4", "scenes.jsonl"]
    if features:  # imported here: the features come from the encoders of the task layer
        from xmodal.tasks.avvp import write_official_features

        write_official_features(out)
        files += ["features/{vggish,res152,r2plus1d_18}/<filename>.npy"]
    write_card(out, "LLP (AVVP)", counts, LLP_CONFIG, files,
               "Several classes per clip with audio-only (off-screen), visual-only (silent) and overlapping "
               "events. Training clips carry video-level labels only. A class is audible (visible) in a segment "
               "when one of its objects sounds (is on screen) for more than half of it.")
    return out


# ---------------------------------------------------------------- VGG-SS and Flickr-SoundNet

def _source_box(scene: scenes.Scene) -> tuple[str, list[int]] | None:
    sounding = [o for o in scene.objects if o.sounding]
    if not sounding:
        return None
    (obj,) = sounding
    box = scenes.box_at(obj, REFERENCE_TIME, scene.config)
    assert box is not None  # the scene generator keeps the sounding object on screen at the reference time
    return obj.cls, box


def _vggss_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    src = _source_box(scene)
    rec = None
    if src is not None:
        cls, (x0, y0, x1, y1) = src
        w, h = scene.config.width, scene.config.height
        rec = vggss.VGGSSAnnotation(scene.id, cls, ((x0 / w, y0 / h, x1 / w, y1 / h),))
    return {**scene_record(scene, info), "record": rec, "file": scene.id}


def build_vggss(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1) -> Path:
    """``video/<file>.mp4``, ``frames/<file>.jpg`` (the annotated middle frame), ``audio/<file>.wav``,
    ``vggss.json`` (test clips) with ``vggss_train.json`` / ``vggss_val.json`` in the same layout, and
    ``silent.json``: the clips in which nothing sounds (negatives, absent from the box files)."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, LOCALISATION_CONFIG, _vggss_view, lambda sid: {
        "video": f"video/{sid}.mp4", "audio": f"audio/{sid}.wav", "frame": (REFERENCE_TIME, f"frames/{sid}.jpg")})
    results = run_jobs(jobs, workers)
    for split, name in (("train", "vggss_train.json"), ("val", "vggss_val.json"), ("test", "vggss.json")):
        vggss.write_vggss(out / name, [r["record"] for r in results if r["split"] == split and r["record"]])
    (out / "silent.json").write_text(json.dumps({s: [r["file"] for r in results if r["split"] == s and
                                                     r["record"] is None] for s in counts}, sort_keys=True))
    write_scenes(out, results)
    write_card(out, "VGG-SS", counts, LOCALISATION_CONFIG,
               ["vggss.json", "vggss_train.json", "vggss_val.json", "silent.json", "video/<file>.mp4",
                "frames/<file>.jpg", "audio/<file>.wav", "scenes.jsonl"],
               "Two to four static objects of different classes, exactly one sounding, drawn uniformly and so "
               "uncorrelated with size, position or saliency; 10% of the clips are silent negatives. The box is "
               f"the sounding object's at t = {REFERENCE_TIME} s, normalised xyxy.")
    return out


def _flickr_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    src = _source_box(scene)
    if src is None:
        raise ConfigError(f"{scene.id}: a Flickr-SoundNet scene needs a sounding object")
    _, (x0, y0, x1, y1) = src
    rng = np.random.default_rng([scene.seed, scene.index, 11])
    side = flickr_soundnet.FRAME_SIZE
    boxes = []
    for a in range(3):  # three annotators, each off by a few pixels on every edge (end-exclusive, as LVS slices)
        j = rng.integers(-6, 7, size=4)
        bx0, by0 = int(np.clip(x0 + j[0], 0, side - 1)), int(np.clip(y0 + j[1], 0, side - 1))
        bx1, by1 = int(np.clip(x1 + j[2], bx0 + 1, side)), int(np.clip(y1 + j[3], by0 + 1, side))
        boxes.append(flickr_soundnet.FlickrBox(bx0, by0, bx1, by1, str(a + 1)))
    return {**scene_record(scene, info), "record": flickr_soundnet.FlickrAnnotation(scene.id, tuple(boxes))}


def mute(scene: scenes.Scene) -> scenes.Scene:
    """The scene with nothing sounding: a silent-frame negative of the same picture."""
    return replace(scene, objects=[replace(o, sounding=[]) for o in scene.objects])


SILENT_SUFFIX = "_silent"


def _silent_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    record = scene_record(scene, info)
    record["scene"]["id"] = scene.id + SILENT_SUFFIX
    return {**record, "file": scene.id + SILENT_SUFFIX}


def build_flickr_soundnet(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1) -> Path:
    """``frames/<id>.jpg`` (256 x 256), ``audio/<id>.wav``, ``Annotations/<id>.xml`` for the test clips with
    three jittered annotator boxes each, ``train.txt`` / ``val.txt`` / ``test.txt`` id lists, and ``silent.json``:
    silent-frame negatives, ``<id>_silent`` for every tenth clip of each split (index 0, 10, ...), the same frame
    with nothing sounding (absent from the lists and annotations)."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, FLICKR_CONFIG, _flickr_view, lambda sid: {
        "audio": f"audio/{sid}.wav", "frame": (REFERENCE_TIME, f"frames/{sid}.jpg")})
    negatives = [ClipJob(j.seed, j.index, j.split, j.config, j.out, _silent_view, transform=mute,
                         audio=f"audio/{sid}{SILENT_SUFFIX}.wav", frame=(REFERENCE_TIME, f"frames/{sid}{SILENT_SUFFIX}.jpg"))
                 for j in jobs if j.index % 10 == 0 for sid in [scenes.scene_id(j.seed, j.index, j.split)]]
    results = run_jobs(jobs, workers)
    silent = run_jobs(negatives, workers)
    flickr_soundnet.write_flickr_dir(out / "Annotations", [r["record"] for r in results if r["split"] == "test"])
    for split in counts:
        (out / f"{split}.txt").write_text("".join(r["record"].file_id + "\n" for r in results
                                                  if r["split"] == split))
    (out / "silent.json").write_text(json.dumps({s: [r["file"] for r in silent if r["split"] == s] for s in counts},
                                                sort_keys=True))
    write_scenes(out, results + silent)
    write_card(out, "Flickr-SoundNet", counts, FLICKR_CONFIG,
               ["Annotations/<id>.xml", "train.txt", "val.txt", "test.txt", "silent.json", "frames/<id>.jpg",
                "audio/<id>.wav", "scenes.jsonl"],
               "As the VGG-SS scenes, at 256 x 256 (the annotation frame of Flickr-SoundNet), with three "
               "annotators whose boxes are the true box (end-exclusive pixel corners) moved by up to 6 pixels "
               "per edge. Every tenth clip of each split also has a silent twin, <id>_silent: the same frame with "
               "nothing sounding (listed in silent.json only).")
    return out


# ---------------------------------------------------------------- MUSIC-AVQA

def _avqa_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng([scene.seed, scene.index, 13])
    qs = scene_questions.avqa_questions(scene, rng, info.get("loudness"))
    return {**scene_record(scene, info), "questions": [{**q, "video_id": scene.id} for q in qs]}


def build_music_avqa(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1, features: bool = False,
                     test_n: int | None = None) -> Path:
    """``MUSIC-AVQA-videos/<video_id>.mp4`` (stereo: every instrument panned by its position, so left and right
    can be heard) and ``avqa-{train,val,test}.json`` with answers balanced per question family within each
    split. ``features``: also the per-video ``.npy`` features in the benchmark's layout
    (:func:`xmodal.tasks.avqa.write_official_features`). ``test_n``: the test split's clips, apart from ``n``
    (a larger held-out set; the train and val splits are those of ``n`` alone, question ids included)."""
    out = Path(root)
    counts = split_counts(n)
    if test_n is not None:
        if test_n < 1:
            raise ConfigError(f"test_n must be at least 1, got {test_n}")
        counts["test"] = int(test_n)
    counts, jobs = make_jobs(out, n, seed, AVQA_CONFIG, _avqa_view,
                             lambda sid: {"video": f"MUSIC-AVQA-videos/{sid}.mp4", "stereo": True}, counts)
    results = run_jobs(jobs, workers)
    qid = 0
    for k, split in enumerate(counts):
        items = [q for r in results if r["split"] == split for q in r["questions"]]
        rng = np.random.default_rng([seed, 17, k])
        kept = scene_questions.balance(items, lambda q: tuple(q["type"]), scene_questions.answer_key, rng,
                                       rescue=True)
        records = []
        for q in kept:
            records.append(music_avqa.AVQARecord(q["video_id"], qid, tuple(q["type"]), q["question_content"],
                                                 tuple(q["templ_values"]), q["anser"], 0))
            qid += 1
        music_avqa.write_avqa(out / f"avqa-{split}.json", records)
    write_scenes(out, results)
    files = ["avqa-train.json", "avqa-val.json", "avqa-test.json", "MUSIC-AVQA-videos/<video_id>.mp4",
             "scenes.jsonl"]
    if features:  # imported here: the features come from the encoders of the task layer
        from xmodal.tasks.avqa import write_official_features

        write_official_features(out)
        files += ["feats/vggish/<video_id>.npy", "feats/res18_14x14/<video_id>.npy"]
    write_card(out, "MUSIC-AVQA", counts, AVQA_CONFIG, files,
               "Instruments only. Questions of the nine MUSIC-AVQA families; within each split every answer of a "
               "family is kept equally often (answers rarer than a quarter of the commonest are dropped, but a "
               "family keeps at least its two commonest answers; the temporal family, whose question names "
               "its two candidates, balances which of them is the answer), so a question-only model stays at "
               "chance. Loudness compares each object's own stem, in dB RMS over "
               "its sounding samples, and is asked only when the levels differ by 3 dB or more. The soundtrack is stereo: "
               "each instrument is panned with the constant-power law from the horizontal centre of its box, "
               "frame by frame (an instrument never on screen sits in the centre).")
    return out


register_scene_builder("ave-scenes", "AVE-format scenes: one audio-visual event per clip (MP4 + Annotations.txt)", build_ave)
register_scene_builder("llp-scenes", "LLP/AVVP-format scenes: weak train labels, dense audio/visual eval CSVs (MP4)", build_llp)
register_scene_builder("vggss-scenes", "VGG-SS-format scenes: one sounding object among 2-4, vggss.json boxes (MP4)",
          build_vggss)
register_scene_builder("flickr-soundnet-scenes", "Flickr-SoundNet-format scenes: frames, audio, XML boxes of 3 annotators",
          build_flickr_soundnet)
register_scene_builder("music-avqa-scenes", "MUSIC-AVQA-format scenes: instrument clips and balanced avqa-*.json questions",
          build_music_avqa)
