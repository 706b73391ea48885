"""The sound-and-sight vocabulary of the scene engine: object classes that have both a real look and a real sound.

Every class has a sprite (a Noto Color Emoji glyph, Debian ``fonts-noto-color-emoji``, OFL-1.1), a sound source
(see :mod:`xmodal.data.synth.sources`), a name with synonyms for language, and the verb its sound takes
("barking"). Attributes are applied at render time: a colour tint and a size. Props (tree, house, rock) are
visual distractors with no sound.

Sprites are trimmed to the glyph's alpha bounding box, so a sprite placed at (x, y) covers exactly the box
``(x, y, x + w, y + h)``: the per-frame boxes of the ground truth are that rectangle, not an estimate.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from xmodal.errors import ConfigError

FONT_PATH = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_PROVENANCE = {"package": "Debian fonts-noto-color-emoji", "file": FONT_PATH, "licence": "OFL-1.1"}
ALPHA_VISIBLE = 128  # a sprite pixel belongs to the object when its alpha is at least this


@dataclass(frozen=True)
class ObjectClass:
    """One class: ``kind`` is animal | instrument | object | person | prop (props are silent)."""

    name: str
    kind: str
    emoji: str
    synonyms: tuple[str, ...]
    verb: str  # the "-ing" form of its sound: "barking", "playing", "ringing", "speaking"; "" for props
    source: str  # key into sources.SOURCES; "" for props
    plural: str = ""

    @property
    def plural_name(self) -> str:
        return self.plural or self.name + "s"

    @property
    def sounding(self) -> bool:
        return bool(self.source)


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("dog", "animal", "\U0001F415", ("dog", "puppy", "hound"), "barking", "animal:dog"),
    ObjectClass("cat", "animal", "\U0001F408", ("cat", "kitty", "feline"), "meowing", "animal:cat"),
    ObjectClass("cow", "animal", "\U0001F404", ("cow", "cattle animal", "heifer"), "mooing", "animal:cow"),
    ObjectClass("duck", "animal", "\U0001F986", ("duck", "drake", "waterfowl"), "quacking", "animal:duck"),
    ObjectClass("sheep", "animal", "\U0001F411", ("sheep", "lamb", "ewe"), "bleating", "animal:sheep",
                plural="sheep"),
    ObjectClass("horse", "animal", "\U0001F40E", ("horse", "pony", "stallion"), "neighing", "animal:horse"),
    ObjectClass("rooster", "animal", "\U0001F413", ("rooster", "cockerel", "chicken"), "crowing",
                "animal:rooster"),
    ObjectClass("owl", "animal", "\U0001F989", ("owl", "night bird", "hooting bird"), "hooting", "animal:owl"),
    ObjectClass("pig", "animal", "\U0001F416", ("pig", "hog", "swine"), "oinking", "animal:pig"),
    ObjectClass("frog", "animal", "\U0001F438", ("frog", "toad", "amphibian"), "croaking", "animal:frog"),
    ObjectClass("violin", "instrument", "\U0001F3BB", ("violin", "fiddle", "string instrument"), "playing",
                "instrument:violin"),
    ObjectClass("piano", "instrument", "\U0001F3B9", ("piano", "keyboard", "pianoforte"), "playing",
                "instrument:piano"),
    ObjectClass("trumpet", "instrument", "\U0001F3BA", ("trumpet", "horn", "cornet"), "playing",
                "instrument:trumpet"),
    ObjectClass("saxophone", "instrument", "\U0001F3B7", ("saxophone", "sax", "reed horn"), "playing",
                "instrument:saxophone"),
    ObjectClass("guitar", "instrument", "\U0001F3B8", ("guitar", "electric guitar", "six-string"), "playing",
                "instrument:guitar"),
    ObjectClass("drum", "instrument", "\U0001F941", ("drum", "snare drum", "percussion"), "playing",
                "instrument:drum"),
    ObjectClass("flute", "instrument", "\U0001FA88", ("flute", "fife", "pipe"), "playing", "instrument:flute"),
    ObjectClass("accordion", "instrument", "\U0001FA97", ("accordion", "squeezebox", "concertina"), "playing",
                "instrument:accordion"),
    ObjectClass("bell", "object", "\U0001F514", ("bell", "chime", "handbell"), "ringing", "object:bell"),
    ObjectClass("alarm clock", "object", "\u23F0", ("alarm clock", "clock", "alarm"), "ringing",
                "object:alarm clock"),
    ObjectClass("phone", "object", "\u260E", ("phone", "telephone", "landline"), "ringing", "object:phone"),
    ObjectClass("camera", "object", "\U0001F4F7", ("camera", "photo camera", "snapshot camera"), "clicking",
                "object:camera"),
    ObjectClass("person", "person", "\U0001F5E3", ("person", "speaker", "talker"), "speaking", "person:speech",
                plural="people"),
    ObjectClass("tree", "prop", "\U0001F333", ("tree", "oak", "leafy tree"), "", ""),
    ObjectClass("house", "prop", "\U0001F3E0", ("house", "home", "cottage"), "", ""),
    ObjectClass("rock", "prop", "\U0001FAA8", ("rock", "stone", "boulder"), "", ""),
)
BY_NAME: dict[str, ObjectClass] = {c.name: c for c in CLASSES}
SOUNDING = tuple(c.name for c in CLASSES if c.sounding)
INSTRUMENTS = tuple(c.name for c in CLASSES if c.kind == "instrument")
PROPS = tuple(c.name for c in CLASSES if c.kind == "prop")

# Tints: blended over the sprite's own colours, so the class stays recognisable. "plain" is no tint.
TINTS: dict[str, tuple[int, int, int] | None] = {
    "plain": None, "red": (230, 30, 30), "green": (30, 190, 40), "blue": (30, 70, 230), "yellow": (240, 220, 20),
    "purple": (150, 40, 200),
}
TINT_STRENGTH = 0.55
# Sizes: sprite height as a fraction of the frame height (jittered per split, see scenes.SPLIT_RANGES).
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.25, "large": 0.35}


def get_class(name: str) -> ObjectClass:
    """The class called ``name``; ConfigError listing the known names otherwise."""
    if name not in BY_NAME:
        raise ConfigError(f"unknown scene class {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


@functools.cache
def _glyph(emoji: str) -> np.ndarray:
    """uint8 RGBA (h, w, 4) of the glyph at the font's native size, trimmed to its alpha bounding box."""
    from PIL import Image, ImageDraw, ImageFont

    from xmodal.errors import MissingDependencyError

    try:
        font = ImageFont.truetype(FONT_PATH, 109)  # the only size the CBDT strikes load at
    except OSError as exc:
        raise MissingDependencyError(f"{FONT_PATH} is missing: apt-get install fonts-noto-color-emoji") from exc
    canvas = Image.new("RGBA", (180, 180), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((90, 90), emoji, font=font, embedded_color=True, anchor="mm")
    arr = np.asarray(canvas)
    ys, xs = np.nonzero(arr[:, :, 3] >= ALPHA_VISIBLE)
    if len(ys) == 0:
        raise ConfigError(f"the emoji font draws nothing for U+{ord(emoji[0]):04X}")
    return arr[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1].copy()


@functools.lru_cache(maxsize=4096)
def sprite(name: str, height: int, tint: str = "plain", rotation: float = 0.0) -> np.ndarray:
    """uint8 RGBA (height', width, 4) of class ``name``: scaled to ``height`` pixels (Lanczos), rotated by
    ``rotation`` degrees, tinted, with alpha binarised at :data:`ALPHA_VISIBLE` and trimmed to the opaque
    pixels, so the object's pixels fill exactly the sprite's rectangle's support."""
    from PIL import Image

    if height < 4:
        raise ConfigError(f"sprite height must be at least 4 pixels, got {height}")
    if tint not in TINTS:
        raise ConfigError(f"unknown tint {tint!r}; known: {', '.join(TINTS)}")
    glyph = Image.fromarray(_glyph(get_class(name).emoji))
    width = max(4, round(glyph.width * height / glyph.height))
    im = glyph.resize((width, height), Image.Resampling.LANCZOS)
    if rotation:
        im = im.rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True)
    arr = np.asarray(im).copy()
    alpha = arr[:, :, 3] >= ALPHA_VISIBLE
    ys, xs = np.nonzero(alpha)
    arr = arr[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    alpha = alpha[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    rgb = arr[:, :, :3].astype(np.float32)
    colour = TINTS[tint]
    if colour is not None:
        rgb = (1 - TINT_STRENGTH) * rgb + TINT_STRENGTH * np.asarray(colour, np.float32)
    out = np.empty(arr.shape, np.uint8)
    out[:, :, :3] = np.clip(np.rint(rgb), 0, 255)
    out[:, :, 3] = np.where(alpha, 255, 0)
    out.setflags(write=False)
    return out


def provenance() -> list[dict[str, str]]:
    """Where every sprite and sound of the vocabulary comes from (package, file, licence), for dataset cards."""
    from xmodal.data.synth.sources import source_provenance

    rows = []
    for c in CLASSES:
        rows.append({"class": c.name, "stream": "sprite", "package": FONT_PROVENANCE["package"],
                     "file": f"{FONT_PATH} (U+{ord(c.emoji[0]):04X})", "licence": FONT_PROVENANCE["licence"]})
        if c.sounding:
            rows.append({"class": c.name, "stream": "sound", **source_provenance(c.source)})
    return rows
