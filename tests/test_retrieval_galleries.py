"""Retrieval galleries apart from the training size: ``test_n``, small frames and short clips, audible order twins;
builds without these options stay byte for byte what they were."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import read_scenes
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.data.benchmarks import audiocaps, karpathy, msrvtt
from xmodal.data.io import read_audio, read_image, read_video
from xmodal.data.synth import scene_benchmarks_vl as vl
from xmodal.data.synth import scene_language, scenes
from xmodal.data.synth.scene_build import split_counts
from xmodal.errors import ConfigError

pytestmark = pytest.mark.slow  # each build renders real frames, clips or soundtracks


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_builds_without_gallery_options_are_unchanged(tmp_path: Path) -> None:
    # digests of the files these builders wrote before the gallery options existed (same n, seed)
    root = vl.build_coco_karpathy(tmp_path / "coco", n=8, seed=5, workers=1)
    assert _md5(root / "dataset_coco.json") == "699391a0a6f86ea0847116291c82f879"
    root = vl.build_audiocaps(tmp_path / "ac", n=4, seed=6, workers=1)
    assert _md5(root / "test.csv") == "d4afffdbf7d63814a3d32700e0f13aa7"
    assert _md5(root / "scenes.jsonl") == "14698c515ef4a76d4626810a4cfd9187"


def test_image_gallery_size_is_set_apart_from_training(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["data", "build", "coco-karpathy-scenes", "--out", str(tmp_path / "coco"),
                                   "--n", "6", "--test-n", "12", "-o", "size=48", "--workers", "2"])
    assert res.exit_code == 0, res.output
    data = karpathy.read_karpathy(tmp_path / "coco" / "dataset_coco.json")
    expected = {**split_counts(6), "test": 12}
    assert {s: len(data.split(s)) for s in expected} == expected
    assert all(len(im.sentences) == 5 and len({s.raw for s in im.sentences}) == 5 for im in data.images)
    assert read_image(tmp_path / "coco" / "images" / data.images[0].filename).shape == (48, 48, 3)
    card = json.loads((tmp_path / "coco" / "card.json").read_text())
    assert card["splits"]["test"] == 12 and card["config"]["height"] == card["config"]["width"] == 48
    from xmodal.data.registry import get_builder

    with pytest.raises(ConfigError, match="unknown options.*duration"):  # images have no duration
        get_builder("coco-karpathy-scenes").build(tmp_path / "bad", n=3, duration=3)
    with pytest.raises(ConfigError, match="test_n"):
        vl.build_coco_karpathy(tmp_path / "zero", n=3, test_n=0)


def test_short_small_video_gallery(tmp_path: Path) -> None:
    root = vl.build_msrvtt(tmp_path / "msrvtt", n=4, seed=2, test_n=4, size=48, duration=4.0, fps=4.0)
    data = msrvtt.read_msrvtt_data(root / "MSRVTT_data.json")
    test = [v for v in data.videos if v.split == "test"]
    assert len(test) == 4 and all(v.end_time == 4.0 for v in data.videos)
    assert len(msrvtt.read_msrvtt_1ka(root / "MSRVTT_JSFUSION_test.csv")) == 4
    clip = read_video(root / "videos" / "all" / f"{test[0].video_id}.mp4")
    assert clip.frames.shape == (16, 48, 48, 3)  # 4 s at 4 fps, 48 x 48 pixels


def test_audio_order_twins_swap_two_sources_and_their_captions(tmp_path: Path) -> None:
    root = vl.build_audiocaps(tmp_path / "ac", n=3, seed=1, test_n=16, duration=4.0, order_twins=True)
    caps = audiocaps.read_audiocaps(root / "test.csv")
    clips = list(dict.fromkeys(c.youtube_id for c in caps))
    assert len(clips) == 16 and len(caps) == 5 * 16
    wav, rate = read_audio(root / "audio" / f"{clips[0]}.wav")
    assert len(wav) == 4 * rate
    truth = read_scenes(root)
    twins = 0
    for even, odd in zip(clips[0::2], clips[1::2]):
        a, b = truth[even]["objects"], truth[odd]["objects"]

        def drop_sound(o: dict) -> dict:
            return {k: v for k, v in o.items() if k != "sounding"}

        if [drop_sound(o) for o in a] != [drop_sound(o) for o in b]:
            continue  # no pair of classes to swap: the odd clip is a scene of its own
        twins += 1
        changed = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(changed) == 2
        (x0, y0), (x1, y1) = changed
        assert x0["sounding"] == y1["sounding"] and x1["sounding"] == y0["sounding"] and x0["cls"] != x1["cls"]
        first = [min((o for o in objs if o["sounding"]), key=lambda o: (o["sounding"][0][0], o["id"]))["cls"]
                 for objs in (a, b)]
        assert first[0] != first[1]  # what is heard first differs, and so do the captions that say it
        texts = {c.youtube_id: c.caption for c in caps}
        assert texts[even] != texts[odd]
    assert twins >= 3
    # the twin transform on a generated scene: the order of first sounds, as captions state it, flips
    rng = np.random.default_rng(0)
    cfg = vl.RETRIEVAL_CONFIG
    for i in range(1, 40, 2):
        base, twin = scenes.generate_scene(3, i - 1, "test", cfg), vl.order_twin(scenes.generate_scene(3, i, "test", cfg))
        if twin.index == i and twin.objects != scenes.generate_scene(3, i, "test", cfg).objects:
            order = [[o.cls for o in sorted((o for o in s.objects if o.sounding), key=lambda o: (o.sounding[0][0], o.id))]
                     for s in (base, twin)]
            assert order[0][0] != order[1][0]
            assert scene_language.audio_captions(base, rng) != scene_language.audio_captions(twin, rng)
