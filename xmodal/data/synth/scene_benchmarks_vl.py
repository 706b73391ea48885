"""Scene datasets in the official layouts of the vision-language and retrieval benchmarks: RefCOCO,
Charades-STA, SNLI-VE, HC-STVG, COCO Karpathy, MSR-VTT, AudioCaps and Clotho
(``xmodal data build <name>-scenes --out DIR --n N --seed S --workers W``).

As in :mod:`xmodal.data.synth.scene_benchmarks_av`, files are written by the writers of
:mod:`xmodal.data.benchmarks`. Retrieval builders pair every even clip with a hard negative twin (the next clip):
the same scene with one object's colour changed, its layout mirrored, or two sources' temporal order swapped, so
captions of the pair differ in one attribute, relation or order. The audio builders do the same with
``order_twins``: the twin swaps two sources' sounding intervals, the one change a listener can hear.

Retrieval galleries of benchmark size stay cheap: ``test_n`` sets the test split's size apart from ``n`` (which
then sizes train and val), and ``size`` (frame height and width, pixels), ``duration`` (seconds) and ``fps``
shrink each clip. Left unset, a build is the same, byte for byte, as without these options.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

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
from xmodal.data.synth import scene_language, scene_questions, scene_render, scenes, vocabulary
from xmodal.data.synth.scene_build import (
    make_jobs,
    register_scene_builder,
    run_jobs,
    scene_record,
    split_counts,
    write_card,
    write_scenes,
)
from xmodal.errors import ConfigError

REFERENCE_TIME = 5.0  # the frame that image benchmarks (RefCOCO, SNLI-VE, COCO) show of a 10-s scene
ALL_CLASSES = tuple(c.name for c in vocabulary.CLASSES)
REFCOCO_CONFIG = scenes.SceneConfig(min_objects=3, max_objects=6, repeat_class=0.6, height=160, width=160,
                                    classes=("dog", "cat", "duck", "violin", "guitar", "bell", "phone", "person"))
STA_CONFIG = scenes.SceneConfig(duration=16.0, time_grid=0.5, min_interval=1.5, min_objects=3, max_objects=5,
                                p_grow=0.3, p_recolour=0.3, repeat_class=0.4)
SNLI_CONFIG = replace(REFCOCO_CONFIG, occluder=0.5)
# Every object bounces (at 10 to 26 px/s), so each turns at the walls: "moves to the left" is a sub-interval of the
# clip, and a slow linear drift never hides an unnamed mover among objects of the referent's class.
# Eight classes, as in the RefCOCO scenes, so that most clips hold several objects of one class.
STVG_CONFIG = scenes.SceneConfig(duration=float(hc_stvg.CLIP_SECONDS), fps=5.0, min_objects=3, max_objects=5,
                                 motions=("bounce",), p_grow=0.3, repeat_class=0.7, max_props=0,
                                 classes=REFCOCO_CONFIG.classes)
STVG_ACTIONS = ("move left", "move right", "grow")  # seen in the frames; sounding is not (the model is visual)
STVG_MAX_SPAN = 0.8  # a referent's action span covers at most this fraction of the clip
STVG_LAYOUTS = {"v1": {"train": "anno_v1/train.json", "val": "anno_v1/val.json", "test": "anno_v1/test.json"},
                "v2": {"train": "anno_v2/trainv2.json", "val": "anno_v2/valv2.json"}}
RETRIEVAL_CONFIG = scenes.SceneConfig(min_objects=2, max_objects=4, p_recolour=0.0)
CLOTHO_CONFIG = replace(RETRIEVAL_CONFIG, duration=15.0)


def gallery_options(config: scenes.SceneConfig, n: int, test_n: int | None = None, size: int | None = None,
                    duration: float | None = None, fps: float | None = None
                    ) -> tuple[scenes.SceneConfig, dict[str, int]]:
    """The scene config with the given clip size, length and rate (unset: as ``config``), and the clips per
    split: :func:`split_counts` of ``n``, with ``test_n`` clips in test when it is given."""
    changes: dict[str, Any] = {}
    if size is not None:
        changes.update(height=int(size), width=int(size))
    if duration is not None:
        if duration < 4:  # growth lasts at least 2 s and starts in the first half
            raise ConfigError(f"duration must be at least 4 s, got {duration}")
        changes.update(duration=float(duration), min_interval=min(config.min_interval, float(duration) / 2))
    if fps is not None:
        changes.update(fps=float(fps))
    cfg = replace(config, **changes).validate() if changes else config
    counts = split_counts(n)
    if test_n is not None:
        if test_n < 1:
            raise ConfigError(f"test_n must be at least 1, got {test_n}")
        counts["test"] = int(test_n)
    return cfg, counts


def _rng(scene: scenes.Scene, salt: int) -> np.random.Generator:
    return np.random.default_rng([scene.seed, scenes.SPLITS.index(scene.split), scene.index, salt])


def hard_negative_twin(scene: scenes.Scene) -> scenes.Scene:
    """For an odd index, the scene of the previous (even) index changed in one respect, by turns: one visible
    object's colour, the layout mirrored left to right (every left/right relation flips), or the sounding
    intervals of two sources swapped (their temporal order flips). Even indices are returned as they are."""
    if scene.index % 2 == 0:
        return scene
    base = scenes.generate_scene(scene.seed, scene.index - 1, scene.split, scene.config)
    rng = _rng(scene, 23)
    kind = (scene.index // 2) % 3
    heard = sorted((o for o in base.objects if o.sounding), key=lambda o: o.sounding[0][0])
    if kind == 2 and len(heard) >= 2 and heard[0].sounding[0][0] < heard[-1].sounding[0][0]:
        a, b = heard[0], heard[-1]
        swap = {a.id: b.sounding, b.id: a.sounding}
        objects = [replace(o, sounding=swap.get(o.id, o.sounding)) for o in base.objects]
        return replace(base, index=scene.index, objects=objects)
    if kind == 1:
        objects = []
        for o in base.objects:
            big = vocabulary.sprite(o.cls, round(o.height_px * (o.grow[2] if o.grow else 1.0)), "plain", o.rotation)
            m = {**o.motion, "x0": base.config.width - big.shape[1] - o.motion["x0"], "vx": -o.motion["vx"]}
            objects.append(replace(o, motion=m))
        return replace(base, index=scene.index, objects=objects,
                       occluders=[[base.config.width - x1, y0, base.config.width - x0, y1]
                                  for x0, y0, x1, y1 in base.occluders])
    visible = [o for o in base.objects if o.visible and o.kind != "prop"] or [o for o in base.objects if o.visible]
    if not visible:
        return scene
    target = visible[int(rng.integers(0, len(visible)))]
    tint = str(rng.choice([t for t in base.config.tints if t != target.tint]))
    objects = [replace(o, tint=tint) if o.id == target.id else o for o in base.objects]
    return replace(base, index=scene.index, objects=objects)


def order_twin(scene: scenes.Scene) -> scenes.Scene:
    """For an odd index, the scene of the previous index with the first source to sound and the last one of
    another class that starts later swapping their sounding intervals, so that the order of first sounds flips
    (an audible hard negative); the scene as drawn when there is no such pair. Even indices are returned as they
    are."""
    if scene.index % 2 == 0:
        return scene
    base = scenes.generate_scene(scene.seed, scene.index - 1, scene.split, scene.config)
    heard = sorted((o for o in base.objects if o.sounding), key=lambda o: (o.sounding[0][0], o.id))
    later = [o for o in heard[1:] if o.cls != heard[0].cls and o.sounding[0][0] > heard[0].sounding[0][0]]
    if not later:
        return scene
    a, b = heard[0], later[-1]
    swap = {a.id: b.sounding, b.id: a.sounding}
    return replace(base, index=scene.index, objects=[replace(o, sounding=swap.get(o.id, o.sounding))
                                                     for o in base.objects])


# ---------------------------------------------------------------- RefCOCO

def _refcoco_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    rng = _rng(scene, 1)
    seen = scene_language.seen_objects(scene, REFERENCE_TIME)
    refs = []
    for o in seen:
        texts = []
        for _ in range(6):  # up to three distinct phrasings (synonyms, kinds) of a unique minimal expression
            found = [r for r in scene_language.referring_expressions(scene, REFERENCE_TIME, rng)
                     if r["object"] == o["id"]]
            if found and found[0]["expression"] not in texts:
                texts.append(found[0]["expression"])
            if len(texts) == 3:
                break
        if texts:
            refs.append({"object": o["id"], "cls": o["cls"], "texts": texts,
                         "kind": vocabulary.get_class(o["cls"]).kind})
    omap, _ = scene_render.object_map_at(scene, REFERENCE_TIME)
    for o in seen:  # COCO polygons of the uncovered pixels (the largest outline), and their pixel count
        o["segmentation"], o["area"] = _polygon(omap == o["id"])
    return {**scene_record(scene, info), "seen": seen, "refs": refs, "image": f"{scene.id}.jpg",
            "size": (scene.config.width, scene.config.height)}


def _polygon(mask: np.ndarray) -> tuple[list[list[float]], float]:
    """The outline of the largest region of ``mask`` as one COCO polygon (x, y pairs at pixel edges, traced by
    skimage's marching squares on the padded mask), and the mask's pixel count."""
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    outline = max(contours, key=len) - 1 + 0.5  # back to unpadded pixel-edge coordinates
    return [[round(float(v), 2) for yx in outline for v in (yx[1], yx[0])]], float(mask.sum())


def build_refcoco(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1) -> Path:
    """``images/<id>.jpg``, ``instances.json`` (every seen object) and ``refs(unc).p`` with splits train, val,
    testA (targets that are animals or people) and testB (other targets)."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, REFCOCO_CONFIG, _refcoco_view,
                             lambda sid: {"frame": (REFERENCE_TIME, f"images/{sid}.jpg")})
    results = run_jobs(jobs, workers)
    cat_id = {c: i + 1 for i, c in enumerate(ALL_CLASSES)}
    images: list[refcoco.CocoImage] = []
    anns: list[refcoco.CocoAnnotation] = []
    refs: list[refcoco.RefRecord] = []
    sent_id = 0
    for image_id, r in enumerate(results, start=1):
        w, h = r["size"]
        images.append(refcoco.CocoImage(image_id, r["image"], w, h))
        ann_of = {}
        for o in r["seen"]:
            x0, y0, x1, y1 = o["box"]
            ann_of[o["id"]] = image_id * 100 + o["id"]
            anns.append(refcoco.CocoAnnotation(
                ann_of[o["id"]], image_id, cat_id[o["cls"]], (float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                o["area"], 0, o["segmentation"]))
        for ref in r["refs"]:
            split = r["split"] if r["split"] != "test" else (
                "testA" if ref["kind"] in ("animal", "person") else "testB")
            # Interned strings: pickle shares repeated string objects by identity, so equal strings must be one
            # object whether the results came from this process or from workers, for byte-identical files.
            sentences = []
            for text in ref["texts"]:
                text = sys.intern(text)
                sentences.append(refcoco.RefSentence(sent_id, text, text, [sys.intern(w) for w in text.split(" ")]))
                sent_id += 1
            refs.append(refcoco.RefRecord(len(refs), ann_of[ref["object"]], image_id, cat_id[ref["cls"]],
                                          sys.intern(r["image"]), sys.intern(split), sentences))
    cats = [refcoco.CocoCategory(i, c, vocabulary.get_class(c).kind) for c, i in cat_id.items()]
    refcoco.write_instances(out / "instances.json", refcoco.CocoInstances(images, anns, cats))
    refcoco.write_refs(out / "refs(unc).p", refs)
    write_scenes(out, results)
    write_card(out, "RefCOCO", counts, REFCOCO_CONFIG, ["refs(unc).p", "instances.json", "images/<id>.jpg",
                                                        "scenes.jsonl"],
               "Crowded frames (3 to 6 objects, classes often repeated). Every object seen at "
               f"t = {REFERENCE_TIME} s with a unique expression is a target, so target position and size follow "
               "the objects'. An expression uses the fewest modifiers that make it unique (colour, size, left/right "
               "of a uniquely named anchor, an ordinal from the left or right, or a negation).")
    return out


# ---------------------------------------------------------------- Charades-STA

def _sta_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    rng = _rng(scene, 2)
    queries = scene_language.temporal_queries(scene, scenes.actions(scene), rng)
    ordered = [q for q in queries if q["kind"] != "single"] + [q for q in queries if q["kind"] == "single"]
    picked = [ordered[i] for i in sorted(rng.permutation(len(ordered))[:4])] if ordered else []
    return {**scene_record(scene, info), "queries": [
        charades_sta.MomentQuery(scene.id, float(q["start"]), float(q["end"]), q["query"]) for q in picked]}


def build_charades_sta(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1) -> Path:
    """``Charades_v1/<vid>.mp4`` (16-s clips) and ``charades_sta_train.txt`` / ``charades_sta_test.txt``
    (``vid start end##sentence``), up to four queries per clip."""
    out = Path(root)
    counts = {"train": n - max(1, round(0.25 * n)), "test": max(1, round(0.25 * n))}
    counts, jobs = make_jobs(out, n, seed, STA_CONFIG, _sta_view, lambda sid: {"video": f"Charades_v1/{sid}.mp4"},
                             counts)
    results = run_jobs(jobs, workers)
    for k, split in enumerate(counts):
        # moment starts flattened over eight bins of the clip, so the start-time prior carries little
        queries = [q for r in results if r["split"] == split for q in r["queries"]]
        kept = scene_questions.balance(queries, lambda q: 0, lambda q: min(7, int(8 * q.start / STA_CONFIG.duration)),
                                       np.random.default_rng([seed, 31, k]), floor=0.0, min_answers=1)
        charades_sta.write_charades_sta(out / f"charades_sta_{split}.txt", kept)
    write_scenes(out, results)
    write_card(out, "Charades-STA", counts, STA_CONFIG, ["charades_sta_train.txt", "charades_sta_test.txt",
                                                         "Charades_v1/<vid>.mp4", "scenes.jsonl"],
               "Moments are action spans (sounding, moving left or right, growing, being on screen) on a 0.5-s "
               "grid. A repeated action is told apart by order ('for the second time') or by another object's "
               "earlier event ('after the cat appears'); such queries are preferred when drawing four per clip. Per "
               "split, queries are subsampled so that moment starts are equally frequent in eight bins of the "
               "clip.")
    return out


# ---------------------------------------------------------------- SNLI-VE

def _snli_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    rng = _rng(scene, 3)
    return {**scene_record(scene, info), "image": f"{scene.id}.jpg",
            "premise": scene_language.image_captions(scene, REFERENCE_TIME, rng)[0],
            "hypotheses": scene_questions.entailment_hypotheses(scene, REFERENCE_TIME, rng)}


def build_snli_ve(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1) -> Path:
    """``flickr30k_images/<id>.jpg`` and ``snli_ve_{train,dev,test}.jsonl``; per split and template the three
    labels are kept equally often."""
    out = Path(root)
    counts, jobs = make_jobs(out, n, seed, SNLI_CONFIG, _snli_view,
                             lambda sid: {"frame": (REFERENCE_TIME, f"flickr30k_images/{sid}.jpg")})
    results = run_jobs(jobs, workers)
    for k, (split, name) in enumerate((("train", "train"), ("val", "dev"), ("test", "test"))):
        items = [{**h, "image": r["image"], "premise": r["premise"], "j": j}
                 for r in results if r["split"] == split for j, h in enumerate(r["hypotheses"])]
        kept = scene_questions.balance(items, lambda h: h["template"], lambda h: h["label"],
                                       np.random.default_rng([seed, 29, k]), floor=0.0)
        pairs = [snli_ve.EntailmentPair(f"{h['image']}#0r{h['j']}{h['label'][0]}", h["image"], h["hypothesis"],
                                        h["label"], h["premise"], f"{h['image']}#0") for h in kept]
        snli_ve.write_snli_ve(out / f"snli_ve_{name}.jsonl", pairs)
    write_scenes(out, results)
    write_card(out, "SNLI-VE", counts, SNLI_CONFIG, ["snli_ve_train.jsonl", "snli_ve_dev.jsonl",
                                                     "snli_ve_test.jsonl", "flickr30k_images/<id>.jpg",
                                                     "scenes.jsonl"],
               "Premise: the frame. Hypotheses of three templates (a coloured object exists, at least k objects "
               "of a class, one class left of another). Entailment: the objects seen make it true; contradiction: "
               "nothing that could be in the frame makes it true; neutral: it cannot be verified, because a wall "
               "(half of the frames have one) or another object may hide what would make it true.")
    return out


# ---------------------------------------------------------------- HC-STVG

def _stvg_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    cfg = scene.config
    rng = _rng(scene, 4)

    def frames(s: float, e: float) -> range:
        return range(math.ceil(s * cfg.fps), math.ceil(e * cfg.fps))

    def on_screen(oid: int, span: range) -> list[bool]:
        return [scenes.box_at(scene.objects[oid], i / cfg.fps, cfg) is not None for i in span]

    # Only what the frames show counts: an action seen in full. Where an object of a class does an action while
    # partly off screen, ordinals over that class and action are unclear to a viewer, so none is asked.
    acts, unclear = [], set()
    for a in scenes.actions(scene):
        if a["action"] in STVG_ACTIONS:
            seen = on_screen(a["object"], frames(a["start"], a["end"]))
            if all(seen):
                acts.append(a)
            elif any(seen):
                unclear.add((scene.objects[a["object"]].cls, a["action"]))

    def usable(q: dict) -> bool:
        """Up to the third time, over a sub-interval of the clip, while another object of the referent's class
        is on screen."""
        cls, span = scene.objects[q["object"]].cls, frames(q["start"], q["end"])
        late = any(f"for the {w} time" in q["query"] for w in scene_language.ORDINALS[3:])  # up to "third"
        return not late and (cls, q["action"]) not in unclear and \
            q["end"] - q["start"] <= STVG_MAX_SPAN * cfg.duration and any(
            any(on_screen(o.id, span)) for o in scene.objects if o.cls == cls and o.id != q["object"])

    # the referent is named by its class and action alone, among several objects of its class
    queries = [q for q in scene_language.action_queries(scene, acts, rng) if usable(q)]
    if not queries:
        return {**scene_record(scene, info), "video": None}
    q = queries[int(rng.integers(0, len(queries)))]
    obj = scene.objects[q["object"]]
    first, stop = math.ceil(q["start"] * cfg.fps), math.ceil(q["end"] * cfg.fps)
    boxes: list[list[float]] = []
    for i in range(first, stop):
        box = scenes.box_at(obj, i / cfg.fps, cfg)
        assert box is not None  # only actions seen in full were kept
        x0, y0, x1, y1 = box
        boxes.append([float(x0), float(y0), float(x1 - x0), float(y1 - y0)])
    video = hc_stvg.HCSTVGVideo(f"{scene.id}.mp4", cfg.num_frames, cfg.width, cfg.height, first,
                                float(q["start"]), float(q["end"]), q["query"], boxes)
    return {**scene_record(scene, info), "video": video, "object": obj.id}


def build_hc_stvg(root: str | Path, n: int = 100, seed: int = 0, workers: int = 1, layout: str = "v1") -> Path:
    """``video/<split>/<key>`` (20-s clips at 5 fps, one folder level down, where TubeDETR's preprocessing looks
    for them) and the annotation JSON of HC-STVG ``layout`` v1 (``anno_v1/{train,val,test}.json`` with
    ``width``/``height``/``caption``) or v2 (``anno_v2/{trainv2,valv2}.json`` with ``img_size``/``English``; no
    test split, as v2's public annotations). One referent per clip, named by its class and a visible action
    (moving left or right, growing) within a sub-interval, among several moving objects of its class."""
    if layout not in STVG_LAYOUTS:
        raise ConfigError(f"hc-stvg-scenes: layout must be one of {', '.join(STVG_LAYOUTS)}, got {layout!r}")
    out = Path(root)
    files = STVG_LAYOUTS[layout]
    counts = None
    if layout == "v2":
        n_val = max(1, round(0.25 * n))
        counts = {"train": n - n_val, "val": n_val}
    counts, jobs = make_jobs(out, n, seed, STVG_CONFIG, _stvg_view,
                             lambda sid: {"video": f"video/{sid.split('_')[1]}/{sid}.mp4"}, counts)
    results = run_jobs(jobs, workers)
    for split in counts:
        hc_stvg.write_hc_stvg(out / files[split], [r["video"] for r in results if r["split"] == split and r["video"]],
                              version=int(layout[1]))
    write_scenes(out, results)
    write_card(out, f"HC-STVG ({layout})", counts, STVG_CONFIG, [*files.values(), "video/<split>/<key>",
                                                                 "scenes.jsonl"],
               "Every object bounces off the frame's edges, so it moves left and right by turns. The referent's "
               "class has several objects in the clip, and the query names it by its class and one visible "
               "action alone ('the dog that moves to the left', '... for the second time' where the class does "
               "it more than once), over at most "
               f"{STVG_MAX_SPAN:.0%} of the clip. The tube is the referent's box on every frame of the action "
               "span (frames ceil(start * fps) up to ceil(end * fps), end excluded); img_num / 20 s is the frame "
               "rate, as TubeDETR assumes. Clips without such a query get no annotation; scenes.jsonl holds "
               "every object's box on every frame (the candidate tracks of the stvg task).")
    return out


# ---------------------------------------------------------------- retrieval

def _retrieval_view(scene: scenes.Scene, info: dict[str, Any]) -> dict[str, Any]:
    rng = _rng(scene, 5)
    return {**scene_record(scene, info), "id": scene.id,
            "image_captions": scene_language.image_captions(scene, REFERENCE_TIME, rng),
            "video_captions": scene_language.captions(scene, rng, n=10, always_tint=True),
            "audio_captions": scene_language.audio_captions(scene, rng)}


_TWINS = ("Every odd clip is the hard negative of the clip before it: the same scene with, by turns, one object's "
          "colour changed, the layout mirrored left to right, or two sources' sounding intervals swapped.")


_ORDER_TWINS = (" Every odd clip is the hard negative of the clip before it: the same scene with the first and the "
                "last source to sound swapping their sounding intervals, so the captions' order of sounds flips.")


def build_coco_karpathy(root: str | Path, n: int = 1000, seed: int = 0, workers: int = 1, test_n: int | None = None,
                        size: int | None = None) -> Path:
    """``images/<id>.jpg`` and ``dataset_coco.json`` (Karpathy splits train/val/test, five sentences each)."""
    out = Path(root)
    cfg, counts = gallery_options(RETRIEVAL_CONFIG, n, test_n, size)
    counts, jobs = make_jobs(out, n, seed, cfg, _retrieval_view,
                             lambda sid: {"frame": (REFERENCE_TIME, f"images/{sid}.jpg")},
                             counts, transform=hard_negative_twin)
    results = run_jobs(jobs, workers)
    images, sentid = [], 0
    for imgid, r in enumerate(results):
        sents = []
        for text in r["image_captions"][:5]:
            sents.append(karpathy.KarpathySentence(sentid, text, text.lower().rstrip(".").replace(";", "").split()))
            sentid += 1
        images.append(karpathy.KarpathyImage(imgid, f"{r['id']}.jpg", r["split"], sents, "images", imgid))
    karpathy.write_karpathy(out / "dataset_coco.json", karpathy.KarpathyDataset("coco", images))
    write_scenes(out, results)
    write_card(out, "COCO (Karpathy splits)", counts, cfg,
               ["dataset_coco.json", "images/<id>.jpg", "scenes.jsonl"], _TWINS)
    return out


def build_msrvtt(root: str | Path, n: int = 1000, seed: int = 0, workers: int = 1, test_n: int | None = None,
                 size: int | None = None, duration: float | None = None, fps: float | None = None) -> Path:
    """``videos/all/video<k>.mp4``, ``MSRVTT_data.json`` (ten sentences per video), ``MSRVTT_train.9k.csv``
    and the 1k-A-style ``MSRVTT_JSFUSION_test.csv`` (one sentence per test video)."""
    out = Path(root)
    cfg, counts = gallery_options(RETRIEVAL_CONFIG, n, test_n, size, duration, fps)
    offsets = {"train": 0, "val": counts["train"], "test": counts["train"] + counts["val"]}
    counts, jobs = make_jobs(out, n, seed, cfg, _retrieval_view, lambda sid: {
        "video": f"videos/all/video{offsets[sid.split('_')[1]] + int(sid.rsplit('_', 1)[1])}.mp4"}, counts,
        transform=hard_negative_twin)
    results = run_jobs(jobs, workers)
    videos: list[msrvtt.MsrvttVideo] = []
    sentences: list[msrvtt.MsrvttSentence] = []
    pairs: list[msrvtt.Msrvtt1kAPair] = []
    split_name = {"train": "train", "val": "validate", "test": "test"}
    for k, r in enumerate(results):
        vid = f"video{k}"
        videos.append(msrvtt.MsrvttVideo(vid, k, split_name[r["split"]], 0, r["id"], 0.0, cfg.duration))
        for text in r["video_captions"]:
            sentences.append(msrvtt.MsrvttSentence(len(sentences), vid, text))
        if r["split"] == "test":
            pairs.append(msrvtt.Msrvtt1kAPair(f"ret{len(pairs)}", f"msr{k}", vid, r["video_captions"][0]))
    msrvtt.write_msrvtt_data(out / "MSRVTT_data.json", msrvtt.MsrvttData(videos, sentences))
    msrvtt.write_msrvtt_train_list(out / "MSRVTT_train.9k.csv", [v.video_id for v in videos if v.split == "train"])
    msrvtt.write_msrvtt_1ka(out / "MSRVTT_JSFUSION_test.csv", pairs)
    write_scenes(out, results)
    write_card(out, "MSR-VTT", counts, cfg,
               ["MSRVTT_data.json", "MSRVTT_train.9k.csv", "MSRVTT_JSFUSION_test.csv", "videos/all/video<k>.mp4",
                "scenes.jsonl"], _TWINS + " The url field holds the scene id.")
    return out


def build_audiocaps(root: str | Path, n: int = 1000, seed: int = 0, workers: int = 1, test_n: int | None = None,
                    duration: float | None = None, order_twins: bool = False) -> Path:
    """``audio/<youtube_id>.wav`` and ``train.csv`` (one caption per clip), ``val.csv`` / ``test.csv`` (five)."""
    out = Path(root)
    cfg, counts = gallery_options(RETRIEVAL_CONFIG, n, test_n, duration=duration)
    counts, jobs = make_jobs(out, n, seed, cfg, _retrieval_view, lambda sid: {"audio": f"audio/{sid}.wav"},
                             counts, transform=order_twin if order_twins else None)
    results = run_jobs(jobs, workers)
    cap_id = 0
    for split in counts:
        rows = []
        for r in (r for r in results if r["split"] == split):
            for text in r["audio_captions"][: 1 if split == "train" else 5]:
                rows.append(audiocaps.AudioCapsCaption(cap_id, r["id"], 0, text))
                cap_id += 1
        audiocaps.write_audiocaps(out / f"{split}.csv", rows)
    write_scenes(out, results)
    write_card(out, "AudioCaps", counts, cfg, ["train.csv", "val.csv", "test.csv", "audio/<youtube_id>.wav",
                                               "scenes.jsonl"],
               "Captions name the sound sources in the order they first sound. youtube_id is the scene id and "
               "start_time 0." + (_ORDER_TWINS if order_twins else ""))
    return out


def build_clotho(root: str | Path, n: int = 1000, seed: int = 0, workers: int = 1, test_n: int | None = None,
                 duration: float | None = None, order_twins: bool = False) -> Path:
    """``{development,validation,evaluation}/<file>.wav`` (15-s clips) and
    ``clotho_captions_{development,validation,evaluation}.csv`` with five captions each."""
    out = Path(root)
    folder = {"train": "development", "val": "validation", "test": "evaluation"}
    cfg, counts = gallery_options(CLOTHO_CONFIG, n, test_n, duration=duration)
    counts, jobs = make_jobs(out, n, seed, cfg, _retrieval_view,
                             lambda sid: {"audio": f"{folder[sid.split('_')[1]]}/{sid}.wav"}, counts,
                             transform=order_twin if order_twins else None)
    results = run_jobs(jobs, workers)
    for split, name in folder.items():
        clips = [clotho.ClothoClip(f"{r['id']}.wav", r["audio_captions"][:5]) for r in results
                 if r["split"] == split]
        clotho.write_clotho(out / f"clotho_captions_{name}.csv", clips)
    write_scenes(out, results)
    write_card(out, "Clotho", counts, cfg,
               [f"clotho_captions_{f}.csv" for f in folder.values()] + ["<split folder>/<file>.wav", "scenes.jsonl"],
               "Captions name the sound sources in the order they first sound." + (_ORDER_TWINS if order_twins else ""))
    return out


register_scene_builder("refcoco-scenes", "RefCOCO-format scenes: frames, instances.json and refs(unc).p with "
                       "unique minimal expressions", build_refcoco)
register_scene_builder("charades-sta-scenes", "Charades-STA-format scenes: 16-s clips and order-dependent moment "
                       "queries", build_charades_sta)
register_scene_builder("snli-ve-scenes", "SNLI-VE-format scenes: frames and hypotheses balanced over three labels",
                       build_snli_ve)
register_scene_builder("hc-stvg-scenes", "HC-STVG-format scenes (--layout v1 or v2): 20-s clips, one tube each "
                       "of an object told apart from its class's others by a visible action",
                       build_hc_stvg)
register_scene_builder("coco-karpathy-scenes", "COCO Karpathy-format scenes: frames, 5 captions, colour-twin hard "
                       "negatives", build_coco_karpathy)
register_scene_builder("msrvtt-scenes", "MSR-VTT-format scenes: clips, MSRVTT_data.json and the 1k-A-style CSV",
                       build_msrvtt)
register_scene_builder("audiocaps-scenes", "AudioCaps-format scenes: 10-s WAVs and caption CSVs", build_audiocaps)
register_scene_builder("clotho-scenes", "Clotho-format scenes: 15-s WAVs and five-caption CSVs", build_clotho)
