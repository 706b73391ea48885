"""``emoji_speech``: a tri-modal (image, audio, text) dataset built offline from real media that packages ship.

In the spirit of the Flickr Audio Caption Corpus (images with spoken captions), every item is one emoji:

- image: the emoji drawn by PIL from Debian's Noto Color Emoji font (fonts-noto-color-emoji, a CBDT bitmap font
  that only loads at size 109) on white, resized to ``image_size`` pixels;
- text: its Unicode name, lower-cased (``unicodedata.name``), e.g. "waving hand sign"; skin-tone sequences
  (base + Fitzpatrick modifier, where the font has a ligature for them) get CLDR's suffix, e.g.
  "waving hand sign: medium-dark skin tone";
- audio: that name spoken by espeak-ng in several voices and speeds (the variety is augmentation), 22.05 kHz
  16-bit FLAC.

Split. An item's *group* is its base emoji: the five skin-tone variants share the group of their base, and
a group goes wholly to ``train`` or ``test`` (a hash of the base name, so the split is stable across machines and
subsets). Test items are therefore emoji never seen in training in any tone, voice or crop: retrieval on them
measures generalisation to new emoji through shared visual parts and shared words ("cat face" after "cat",
"face"), not memorisation. Every voice speaks every item, test items included; the test query uses voice 0.

The dataset is written in xmodal's manifest format and cached: building again with the same options reuses it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xmodal.data.registry import register_builder
from xmodal.errors import ConfigError, MissingDependencyError

NAME = "emoji_speech"
VERSION = 1
FONT_PATH = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size the CBDT strikes of NotoColorEmoji load at
SAMPLE_RATE = 22_050  # espeak-ng's own rate: resampling cost more than synthesis, so the audio stays native

# Blocks that hold emoji with a colour glyph in Noto (the font's cmap decides which code points are kept).
_BLOCKS = [(0x2600, 0x27C0), (0x1F300, 0x1F3FB), (0x1F400, 0x1F650), (0x1F680, 0x1F700), (0x1F7E0, 0x1F7F0),
           (0x1F900, 0x1FA00), (0x1FA70, 0x1FB00)]
_SKIN_TONES = {0x1F3FB: "light", 0x1F3FC: "medium-light", 0x1F3FD: "medium", 0x1F3FE: "medium-dark",
               0x1F3FF: "dark"}
# (espeak-ng voice, words per minute). Voice 0 speaks the test queries.
DEFAULT_VOICES: list[tuple[str, int]] = [("en-us", 175), ("en+f3", 150), ("en-gb-scotland+m3", 195),
                                         ("en-gb-x-rp+f2", 165)]


@dataclass
class BuildOptions:
    """What to build. ``max_groups`` keeps a deterministic subset (for tests); ``None`` keeps everything."""

    image_size: int = 64
    voices: list[tuple[str, int]] = field(default_factory=lambda: list(DEFAULT_VOICES))
    skin_tones: bool = True
    test_percent: int = 15
    max_groups: int | None = None
    jobs: int = 2

    def key(self) -> str:
        """A short hash of the options: the cache is valid only for the same options and builder version."""
        blob = json.dumps({"v": VERSION, **asdict(self), "jobs": None}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


@dataclass
class Emoji:
    id: str  # "u1f44b" or "u1f44b-1f3fe"
    chars: str
    text: str
    group: str  # the base emoji's id
    split: str


def _font():
    from PIL import ImageFont

    if not FONT_PATH.is_file():
        raise MissingDependencyError(f"{FONT_PATH} is missing: apt-get install fonts-noto-color-emoji")
    return ImageFont.truetype(str(FONT_PATH), FONT_SIZE)


def render(chars: str, size: int, font=None):
    """Draw ``chars`` in colour, centred on a white square, resized to ``size`` x ``size``: an RGB PIL image,
    or None when the font has no colour glyph for it (nothing drawn)."""
    from PIL import Image, ImageDraw

    font = font or _font()
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((80, 80), chars, font=font, embedded_color=True, anchor="mm")
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def _group_split(group_name: str, test_percent: int) -> str:
    h = int(hashlib.sha1(group_name.encode()).hexdigest(), 16)
    return "test" if h % 100 < test_percent else "train"


def enumerate_emoji(opts: BuildOptions) -> list[Emoji]:
    """Every emoji the font draws in colour in :data:`_BLOCKS`, plus skin-tone variants, with its split."""
    font = _font()
    items: list[Emoji] = []
    for lo, hi in _BLOCKS:
        for cp in range(lo, hi):
            ch = chr(cp)
            name = unicodedata.name(ch, "")
            if not name or font.getbbox(ch) is None or render(ch, 8, font) is None:
                continue
            gid = f"u{cp:x}"
            split = _group_split(name, opts.test_percent)
            items.append(Emoji(gid, ch, name.lower(), gid, split))
            if not opts.skin_tones:
                continue
            # The font has a ligature for base+modifier exactly when the pair draws as one glyph-wide image.
            one = font.getbbox(ch)
            two = font.getbbox(ch + chr(0x1F3FD))
            if two[2] - two[0] > 1.2 * (one[2] - one[0]):
                continue
            for mod, tone in _SKIN_TONES.items():
                items.append(Emoji(f"{gid}-{mod:x}", ch + chr(mod), f"{name.lower()}: {tone} skin tone", gid, split))
    if opts.max_groups is not None:
        # A deterministic subset spread over the blocks: groups ordered by hash, the first max_groups kept,
        # with at least a few test groups so a small build still has a held-out split.
        split_of = {e.group: e.split for e in items}
        order = sorted(split_of, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
        n_test = max(2, round(opts.max_groups * opts.test_percent / 100))
        keep = set([g for g in order if split_of[g] == "test"][:n_test])
        keep |= set([g for g in order if split_of[g] == "train"][: max(1, opts.max_groups - n_test)])
        items = [e for e in items if e.group in keep]
    return items


def audio_field_names(n_voices: int) -> list[str]:
    """Manifest fields of the recordings: "audio" for voice 0, then "audio_1", "audio_2", ..."""
    return ["audio"] + [f"audio_{v}" for v in range(1, n_voices)]


def _speak_all(voice: str, rate: int, texts: list[str], paths: list[str]) -> list[float]:
    """Worker: speak every text with one voice and write it as FLAC. Returns durations (s)."""
    from xmodal.data.io.audio import write_audio
    from xmodal.data.synth.espeak import Espeak

    tts = Espeak()
    durations = []
    for text, path in zip(texts, paths):
        wav, sr = tts.speak(text, voice, rate)
        if sr != SAMPLE_RATE:
            raise RuntimeError(f"espeak-ng speaks at {sr} Hz, this builder expects {SAMPLE_RATE} Hz")
        write_audio(path, wav, SAMPLE_RATE, subtype="PCM_16")
        durations.append(len(wav) / SAMPLE_RATE)
    return durations


def build(root: str | Path, opts: BuildOptions | None = None) -> Path:
    """Build the dataset under ``root/emoji_speech-<options hash>`` (or reuse it) and return that directory."""
    opts = opts or BuildOptions()
    out = Path(root) / f"{NAME}-{opts.key()}"
    if _complete(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several processes (torchrun ranks) may start the same build: one builds, the others wait and reuse it.
    with file_lock(out.with_name(out.name + ".lock")):
        if _complete(out):
            return out
        return _build(out, opts)


def _complete(out: Path) -> bool:
    return (out / "dataset.json").is_file() and (out / "manifest.jsonl").is_file()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) held for the ``with`` block; released if the process dies."""
    import fcntl

    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(out: Path, opts: BuildOptions) -> Path:
    from xmodal.data.manifest import write_manifest

    if not opts.voices:
        raise ConfigError("emoji_speech: voices must name at least one (voice, rate) pair")
    start = time.perf_counter()
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():  # left by a build that was killed
        import shutil

        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "audio").mkdir(parents=True, exist_ok=True)

    items = enumerate_emoji(opts)
    # One worker per voice (at most ``jobs`` at a time); each keeps one espeak-ng instance for all its lines.
    texts = [e.text for e in items]
    audio_rel = [[f"audio/{e.id}_v{v}.flac" for e in items] for v in range(len(opts.voices))]
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=max(1, min(opts.jobs, len(opts.voices))), mp_context=ctx) as pool:
        futures = [pool.submit(_speak_all, voice, rate, texts, [str(tmp / p) for p in audio_rel[v]])
                   for v, (voice, rate) in enumerate(opts.voices)]
        font = _font()  # images are drawn here while the workers speak
        for e in items:
            render(e.chars, opts.image_size, font).save(tmp / "images" / f"{e.id}.png")
        durations = [f.result() for f in futures]

    # Voice 0 is the field "audio"; voice k > 0 is "audio_k". Each is a manifest field of its own so that
    # `xmodal data verify` decodes every recording.
    audio_fields = audio_field_names(len(opts.voices))
    records: list[dict[str, Any]] = []
    for i, e in enumerate(items):
        row: dict[str, Any] = {"id": e.id, "split": e.split, "group": e.group, "emoji": e.chars,
                               "image": f"images/{e.id}.png", "caption": e.text}
        for v, fld in enumerate(audio_fields):
            row[fld] = audio_rel[v][i]
        row["audio_seconds"] = [round(durations[v][i], 4) for v in range(len(opts.voices))]
        records.append(row)
    info = {
        "name": NAME, "version": VERSION,
        "description": "Noto colour emoji, their Unicode names, and the names spoken by espeak-ng in "
                       f"{len(opts.voices)} voices; test = emoji groups never seen in training",
        "modalities": {"image": "image", "caption": "caption", **{f: "waveform" for f in audio_fields}},
        "sample_rate": SAMPLE_RATE, "image_size": [opts.image_size, opts.image_size],
        "voices": [list(v) for v in opts.voices], "options": asdict(opts),
        "splits": {s: sum(r["split"] == s for r in records) for s in ("train", "test")},
        "sources": {"image": "Noto Color Emoji (Debian fonts-noto-color-emoji, OFL-1.1)",
                    "audio": "espeak-ng (Debian espeak-ng)", "caption": "Unicode character names"},
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    write_manifest(tmp, info, records)
    tmp.rename(out)
    return out


def build_dataset(root: str | Path, **options: Any) -> Path:
    """Registry entry point: ``build_dataset(root, image_size=64, max_groups=None, ...)`` (see BuildOptions)."""
    known = {f for f in BuildOptions.__dataclass_fields__}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(f"emoji_speech: unknown options {sorted(unknown)}; known: {sorted(known)}")
    if "voices" in options:
        options["voices"] = [(str(v), int(r)) for v, r in options["voices"]]
    return build(root, BuildOptions(**options))


register_builder(NAME, "Noto emoji images + Unicode names + espeak-ng speech (image/audio/text, offline)",
                 build_dataset)
