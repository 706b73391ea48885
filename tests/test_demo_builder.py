"""The emoji_speech builder on real media (Noto Color Emoji + espeak-ng), a small deterministic subset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
pytestmark = [
    pytest.mark.skipif(not FONT.is_file(), reason="needs Debian fonts-noto-color-emoji"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian espeak-ng"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.data.registry import get_builder

    root = tmp_path_factory.mktemp("data")
    return get_builder("emoji_speech").build(root, max_groups=30, voices=[["en-us", 175], ["en+f3", 150]])


def test_registered() -> None:
    from xmodal.data.registry import list_builders

    assert "emoji_speech" in [b.name for b in list_builders()]


def test_manifest_is_valid_and_decodes(built: Path) -> None:
    from xmodal.data.manifest import read_manifest, verify

    meta, rows = read_manifest(built)
    assert meta["modalities"] == {"image": "image", "caption": "caption", "audio": "waveform",
                                  "audio_1": "waveform"}
    report = verify(built)
    assert report.ok, report.bad
    assert report.fields_checked == 4 * len(rows)
    groups = {r["group"] for r in rows}
    assert len(groups) == 30
    assert {r["split"] for r in rows} == {"train", "test"}


def test_split_keeps_skin_tone_variants_together(built: Path) -> None:
    from xmodal.data.manifest import read_manifest

    _, rows = read_manifest(built)
    split_of_group: dict[str, set[str]] = {}
    for r in rows:
        split_of_group.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_group.values())
    # The full enumeration has 130 bases with skin tones; the split is a pure function of the base name.
    from xmodal.data.synth.emoji_speech import BuildOptions, enumerate_emoji

    full = enumerate_emoji(BuildOptions())
    tones = [e for e in full if e.id != e.group]
    assert len(tones) % 5 == 0 and len(tones) >= 5 * 100
    base_split = {e.id: e.split for e in full if e.id == e.group}
    assert all(e.split == base_split[e.group] for e in tones)
    test_share = np.mean([e.split == "test" for e in full if e.id == e.group])
    assert 0.10 < test_share < 0.20  # test_percent=15 by hash


def test_media_are_real(built: Path) -> None:
    from xmodal.data import io
    from xmodal.data.manifest import read_manifest

    meta, rows = read_manifest(built)
    for r in rows[:10]:
        img = io.read_image(built / r["image"], "RGB")
        assert img.shape == (64, 64, 3)
        assert img.std() > 10  # a drawn glyph, not a blank square
        for f in ("audio", "audio_1"):
            wav, sr = io.read_audio(built / r[f])
            assert sr == meta["sample_rate"] == 22050
            assert len(wav) / sr > 0.3 and np.abs(wav).max() > 0.05  # speech, not silence
        assert r["caption"] and r["caption"] == r["caption"].lower()
    # Two voices speak the same words differently.
    a, _ = io.read_audio(built / rows[0]["audio"])
    b, _ = io.read_audio(built / rows[0]["audio_1"])
    assert len(a) != len(b)


def test_second_build_reuses_cache(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: building again with the same options calls neither the builder nor espeak-ng."""
    from xmodal.data.synth import emoji_speech

    calls: list[str] = []
    monkeypatch.setattr(emoji_speech, "_build", lambda *a, **k: calls.append("build"))
    monkeypatch.setattr(emoji_speech, "_speak_all", lambda *a, **k: calls.append("speak"))
    before = (built / "manifest.jsonl").stat().st_mtime_ns
    again = emoji_speech.build_dataset(built.parent, max_groups=30, voices=[["en-us", 175], ["en+f3", 150]])
    assert again == built and calls == []
    assert (built / "manifest.jsonl").stat().st_mtime_ns == before
    # the same call with other options does reach the builder: the check above is not vacuous
    emoji_speech.build_dataset(built.parent, max_groups=31, voices=[["en-us", 175], ["en+f3", 150]])
    assert calls == ["build"]
    info = json.loads((built / "dataset.json").read_text())
    assert info["splits"]["train"] + info["splits"]["test"] == len((built / "manifest.jsonl").read_text().splitlines())
