"""Stereo soundtracks of the scene engine: the constant-power pan law against hand-worked gains, the pan
following the object's box frame by frame (static, moving, off screen), and the decoded MP4's channel levels.

Hand-worked values: theta = (pan + 1) * pi / 4; pan -0.5 gives (cos(pi/8), sin(pi/8)) = (0.9238795, 0.3826834),
pan 0 gives 1/sqrt(2) = 0.7071068 on both sides, and the right-to-left ratio at pan -0.5 is tan(pi/8) = 0.4142136.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xmodal.data.synth import scene_render, scenes

QUIET = scenes.SceneConfig(min_objects=1, max_objects=1, max_props=0, backgrounds=("plain",), height=96, width=96,
                           noise_db=(float("-inf"), float("-inf")), p_silent=0.0, p_offscreen=0.0,
                           sizes=("medium",))


def _one_object(x_centre: float, vx: float = 0.0, visible: bool = True) -> scenes.Scene:
    """A noise-free scene whose one object sounds all along with its box centred at ``x_centre`` at t = 0."""
    scene = scenes.generate_scene(2, 0, "train", QUIET)
    (obj,) = scene.objects
    obj = replace(obj, visible=[[0.0, 10.0]], sounding=[[0.0, 10.0]], grow=None, recolour=None,
                  motion={"kind": "linear" if vx else "static", "x0": 0, "y0": 30, "vx": 0.0, "vy": 0.0})
    box = scenes.box_at(obj, 0.0, QUIET)
    assert box is not None
    width = box[2] - box[0]
    assert width % 2 == 0  # the centre then lands on a whole pixel
    obj.motion = {**obj.motion, "x0": x_centre - width / 2, "vx": vx}
    if not visible:
        obj.visible = []
    return replace(scene, objects=[obj])


def test_pan_law_hand_worked_values() -> None:
    left, right = scene_render.pan_gains(np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0]))
    assert left == pytest.approx([1.0, 0.9238795, 0.7071068, 0.3826834, 0.0, 0.0], abs=1e-7)
    assert right == pytest.approx([0.0, 0.3826834, 0.7071068, 0.9238795, 1.0, 1.0], abs=1e-7)
    assert left**2 + right**2 == pytest.approx(np.ones(6), abs=1e-12)  # constant power


def test_static_object_is_panned_by_its_position() -> None:
    scene = _one_object(24.0)  # centre at a quarter of the 96-pixel width: pan 2 * 24 / 96 - 1 = -0.5
    assert scene_render.object_pan(scene, scene.objects[0]) == pytest.approx(np.full(80, -0.5))
    mono, stems = scene_render.render_audio(scene, with_stems=True)
    stereo = scene_render.render_audio(scene, stereo=True)
    assert mono.ndim == 1 and stereo.shape == (2, len(mono))
    stem = stems[scene.objects[0].id]
    on = np.abs(stem) > 1e-3
    assert on.mean() > 0.5
    assert (stereo[0][on] / stem[on]) == pytest.approx(np.full(on.sum(), 0.9238795), abs=1e-5)
    assert (stereo[1][on] / stem[on]) == pytest.approx(np.full(on.sum(), 0.3826834), abs=1e-5)


def test_moving_object_pan_follows_its_box_frame_by_frame() -> None:
    scene = _one_object(24.0, vx=4.8)  # the centre moves from pixel 24 (pan -0.5) to 72 (pan 0.5) over 10 s
    pan = scene_render.object_pan(scene, scene.objects[0])
    t = scenes.frame_times(QUIET)
    assert pan[0] == pytest.approx(-0.5) and pan[40] == pytest.approx(0.0)  # t = 5 s: the centre is pixel 48
    assert np.all(np.abs(pan - (2 * (24 + 4.8 * t) / 96 - 1)) <= 1 / 96 + 1e-9)  # boxes are whole pixels
    stereo = scene_render.render_audio(scene, stereo=True)
    stem = scene_render.object_stem(scene, scene.objects[0])
    sr = scene_render.SAMPLE_RATE
    at5 = slice(5 * sr, 5 * sr + 1)  # exactly the frame at t = 5 s: centre, 1/sqrt(2) on both sides
    if abs(stem[at5][0]) > 1e-4:
        assert stereo[0][at5][0] / stem[at5][0] == pytest.approx(0.7071068, abs=1e-5)
    first, last = slice(0, sr), slice(9 * sr, 10 * sr)  # louder on the left early, on the right late
    assert np.sum(stereo[0][first] ** 2) > 4 * np.sum(stereo[1][first] ** 2)
    assert np.sum(stereo[1][last] ** 2) > 4 * np.sum(stereo[0][last] ** 2)


def test_off_screen_source_sits_in_the_centre() -> None:
    scene = _one_object(24.0, visible=False)
    assert scene_render.object_pan(scene, scene.objects[0]) == pytest.approx(np.zeros(80))
    stereo = scene_render.render_audio(scene, stereo=True)
    stem = scene_render.object_stem(scene, scene.objects[0])
    assert stereo[0] == pytest.approx(stem * 0.7071068, abs=1e-6) and stereo[1] == pytest.approx(stereo[0])


def test_mono_stays_the_sum_of_the_stems() -> None:
    scene = _one_object(24.0)
    mono, stems = scene_render.render_audio(scene, with_stems=True)
    assert np.array_equal(mono, np.clip(sum(stems.values()), -1, 1))


def test_decoded_stereo_clip_keeps_the_level_difference(tmp_path) -> None:
    from xmodal.data.io.video import read_video

    scene = _one_object(24.0)
    path = tmp_path / "left.mp4"
    scene_render.write_clip(scene, path, stereo=True)
    clip = read_video(path, with_audio=True)
    assert clip.audio is not None and clip.audio.shape[0] == 2
    rms = np.sqrt(np.mean(clip.audio.astype(np.float64) ** 2, axis=1))
    assert rms[1] / rms[0] == pytest.approx(0.4142136, rel=0.03)  # tan(pi / 8), through AAC
