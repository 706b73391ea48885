"""The scene engine's ground truth checked against the decoded media, not against itself.

Boxes: in the decoded MP4 of a one-object scene on a plain background, the pixels that differ from the background
lie inside the object's box and reach its edges (within 2 pixels: H.264 ringing); with several objects, every
changed pixel lies inside some visible object's box. Sound: librosa's onsets of the decoded soundtrack of an
isolated source fall inside its sounding intervals and the energy outside them is near zero. Segment labels
agree with per-second energy and with the frames in which the object is seen.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from xmodal.data.io.video import read_video
from xmodal.data.synth import scene_render, scenes, vocabulary

ONE = scenes.SceneConfig(min_objects=1, max_objects=1, max_props=0, backgrounds=("plain",), height=96, width=96,
                         noise_db=(float("-inf"), float("-inf")), p_silent=0.0, p_offscreen=0.0,
                         p_always_visible=0.3, sizes=("medium", "large"))  # 4:2:0 chroma blurs tiny sprites


def _background_rgb(scene: scenes.Scene) -> np.ndarray:
    return np.asarray(scene.background["colour"], np.int16)


def _changed(frames: np.ndarray, colour: np.ndarray, threshold: int = 40) -> np.ndarray:
    return np.abs(frames.astype(np.int16) - colour).max(axis=-1) > threshold  # (T, H, W)


@pytest.fixture(scope="module")
def one_object_clips(tmp_path_factory):
    out = []
    root = tmp_path_factory.mktemp("clips")
    for i in range(4):
        scene = scenes.generate_scene(3, i, "train" if i % 2 else "test", ONE)
        path = root / f"{scene.id}.mp4"
        scene_render.write_clip(scene, path)
        out.append((scene, read_video(path)))
    return out


def test_same_arguments_same_scene_and_splits_differ():
    a = json.dumps(scenes.annotation(scenes.generate_scene(5, 7, "train")), sort_keys=True)
    b = json.dumps(scenes.annotation(scenes.generate_scene(5, 7, "train")), sort_keys=True)
    c = json.dumps(scenes.annotation(scenes.generate_scene(5, 7, "test")), sort_keys=True)
    assert a == b and a != c


def test_held_out_ranges_are_disjoint_from_training():
    train, held = scenes.SPLIT_RANGES["train"], scenes.SPLIT_RANGES["heldout"]
    for key in ("scale", "rotation", "rate"):
        for a0, a1 in train[key]:
            for b0, b1 in held[key]:
                assert a1 <= b0 or b1 <= a0, key
    rates = {o.sound["rate"] for i in range(30) for o in scenes.generate_scene(1, i, "test").objects if o.sound}
    assert all(not (0.94 <= r <= 1.06) for r in rates)


def test_decoded_frames_show_the_sprite_exactly_in_its_box(one_object_clips):
    for scene, clip in one_object_clips:
        (obj,) = scene.objects
        changed = _changed(clip.frames, _background_rgb(scene))
        for t_index, t in enumerate(scenes.frame_times(scene.config)):
            box = scenes.box_at(obj, float(t), scene.config)
            ys, xs = np.nonzero(changed[t_index])
            if box is None:
                assert len(ys) == 0, (scene.id, t)
                continue
            x0, y0, x1, y1 = box
            # most sprite pixels that differ from the background survive encoding (a tint can bring a few
            # close to the background colour, so only the distinguishable ones count)
            _, _, height, tint = scenes.state_at(obj, float(t), scene.config)
            spr = vocabulary.sprite(obj.cls, height, tint, obj.rotation)
            distinct = int((_changed(spr[None, :, :, :3], _background_rgb(scene)) & (spr[None, :, :, 3] > 0)).sum())
            assert len(ys) > 0.5 * distinct, (scene.id, t)
            assert abs(xs.min() - x0) <= 2 and abs(ys.min() - y0) <= 2, (scene.id, t, box)
            assert abs(xs.max() + 1 - x1) <= 2 and abs(ys.max() + 1 - y1) <= 2, (scene.id, t, box)


def test_several_objects_changed_pixels_lie_in_visible_boxes(tmp_path):
    cfg = replace(ONE, min_objects=3, max_objects=4, max_props=1)
    scene = scenes.generate_scene(11, 0, "train", cfg)
    path = tmp_path / "multi.mp4"
    scene_render.write_clip(scene, path)
    clip = read_video(path)
    changed = _changed(clip.frames, _background_rgb(scene), threshold=60)
    for t_index, t in enumerate(scenes.frame_times(cfg)):
        inside = np.zeros(changed.shape[1:], bool)
        for o in scene.objects:
            box = scenes.box_at(o, float(t), cfg)
            if box is not None:
                x0, y0, x1, y1 = box
                inside[max(0, y0 - 2): y1 + 2, max(0, x0 - 2): x1 + 2] = True
        assert not (changed[t_index] & ~inside).any(), t


def test_onsets_and_energy_of_an_isolated_source_follow_its_intervals(one_object_clips):
    librosa = pytest.importorskip("librosa")
    for scene, clip in one_object_clips:
        (obj,) = scene.objects
        audio = clip.audio.mean(axis=0)
        sr = clip.sample_rate
        onsets = librosa.onset.onset_detect(y=audio, sr=sr, units="time", backtrack=False)
        assert len(onsets) > 0
        for t in onsets:  # onset_detect reports frame times (hop 512 = 32 ms at 16 kHz)
            assert any(s - 0.05 <= t <= e + 0.05 for s, e in obj.sounding), (scene.id, t, obj.sounding)
        inside = np.zeros(len(audio), bool)
        for s, e in obj.sounding:
            inside[int(s * sr): int(e * sr)] = True
        margin = np.zeros(len(audio), bool)  # 30 ms either side of each edge: codec pre-echo
        for s, e in obj.sounding:
            for edge in (s, e):
                margin[max(0, int((edge - 0.03) * sr)): int((edge + 0.03) * sr)] = True
        outside = ~inside & ~margin
        rms_in = float(np.sqrt(np.mean(audio[inside] ** 2)))
        rms_out = float(np.sqrt(np.mean(audio[outside] ** 2))) if outside.any() else 0.0
        assert rms_in > 0.01 and rms_out < 0.01 * rms_in, (scene.id, rms_in, rms_out)


def test_segment_labels_agree_with_the_decoded_media(one_object_clips):
    for scene, clip in one_object_clips:
        (obj,) = scene.objects
        labels = scenes.segment_labels(scene)
        audio = clip.audio.mean(axis=0)
        sr = clip.sample_rate
        changed = _changed(clip.frames, _background_rgb(scene)).any(axis=(1, 2))  # (T,) object on screen
        fps = int(scene.config.fps)
        for k in range(10):
            second = audio[k * sr: (k + 1) * sr]
            # The second's louder half is heard: a segment is labelled when the source covers over half of it.
            halves = [np.sqrt(np.mean(second[h * sr // 2: (h + 1) * sr // 2] ** 2)) for h in range(2)]
            heard = min(halves) > 1e-3
            assert (obj.cls in labels["audio"][k]) == heard, (scene.id, k)
            seen = changed[k * fps: (k + 1) * fps].mean() > 0.5
            assert (obj.cls in labels["visual"][k]) == seen, (scene.id, k)
            assert (obj.cls in labels["av"][k]) == (heard and seen)


def test_event_scenes_hold_one_event_background_and_distractors():
    from xmodal.data.synth.scene_benchmarks_av import AVE_CONFIG

    background, silent, offscreen = [], 0, 0
    for i in range(60):
        scene = scenes.generate_scene(8, i, "train", AVE_CONFIG)
        av = scenes.segment_labels(scene)["av"]
        (target,) = [o for o in scene.objects if o.visible and o.sounding]
        assert target is [o for o in scene.objects if o.kind != "prop"][-1]  # drawn over every distractor
        assert {c for seg in av for c in seg} == {target.cls}
        background.append(np.mean([not seg for seg in av]))
        silent += any(o.visible and not o.sounding and o.kind != "prop" for o in scene.objects)
        offscreen += any(o.sounding and not o.visible for o in scene.objects)
    assert np.mean(background) > 0.3 and silent > 10 and offscreen > 10  # broadcasting the clip label loses


def test_the_sounding_object_is_independent_of_size():
    from xmodal.data.synth.scene_benchmarks_av import LOCALISATION_CONFIG

    largest, expected, negatives = [], [], 0
    for i in range(300):
        scene = scenes.generate_scene(9, i, "train", LOCALISATION_CONFIG)
        sounding = [o for o in scene.objects if o.sounding]
        if not sounding:
            negatives += 1
            continue
        area = {o.id: np.prod(np.diff(np.reshape(scenes.box_at(o, 5.0, scene.config), (2, 2)), axis=0))
                for o in scene.objects}
        largest.append(max(area, key=area.get) == sounding[0].id)
        expected.append(1 / len(scene.objects))
    assert abs(np.mean(largest) - np.mean(expected)) < 0.08
    assert 10 <= negatives <= 50  # p_negative = 0.1


def test_free_scenes_mix_audio_only_visual_only_and_overlapping_events():
    kinds = {"audio only": 0, "visual only": 0, "both": 0, "several classes": 0}
    for i in range(60):
        seg = scenes.segment_labels(scenes.generate_scene(10, i, "train"))
        heard = {c for s in seg["audio"] for c in s}
        seen = {c for s in seg["visual"] for c in s}
        kinds["audio only"] += bool(heard - seen)
        kinds["visual only"] += bool(seen - heard)
        kinds["both"] += bool(heard & seen)
        kinds["several classes"] += len(heard | seen) >= 2
    assert min(kinds.values()) >= 10, kinds
