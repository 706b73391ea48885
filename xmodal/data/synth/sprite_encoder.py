"""A frame encoder trained here, on the vocabulary's own sprites: the stand-in for the ImageNet CNNs (VGG-19
pool5, ResNet-152) whose features the audio-visual benchmarks distribute, since no weights can be downloaded.

:class:`SpriteEncoder` is a small fully convolutional network: a frame (resized to 112 x 112) goes through four
stride-2 convolutions to a ``7 x 7 x 64`` map (the grid of the benchmarks' pool5 maps, so attention and
localisation keep *where*) and a 1 x 1 classifier gives, per cell, the vocabulary class covering it or
background. It is trained (:func:`train_sprite_encoder`) on frames composed as the scene engine composes them:
its backgrounds (plain, gradient, the training textures), sprites of every class at the training split's scales
and rotations with the vocabulary's tints, several objects overlapping one another and the engine's occluding
wall. A cell's target is the class owning most of its pixels when that is at least :data:`CELL_COVER` of the
cell, else background. Held-out scales, rotations and textures (:data:`xmodal.data.synth.scenes.SPLIT_RANGES`)
are never drawn, so held-out scenes test generalisation.

:func:`load_sprite_encoder` trains on first use and caches the weights with
:class:`xmodal.transforms.cache.TransformCache` under a key of the training recipe and the bytes of every
sprite glyph and texture used (seeded and single-threaded, so the same inputs give the same weights), never
in the repository. :func:`encode_frames` maps uint8 frames to ``{"map": (F, 7, 7, 64), "pooled": (F, 64)}``
(the pooled vector is the map's maximum over cells: which objects are anywhere in the frame).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmodal.data.synth import scenes, vocabulary
from xmodal.errors import ConfigError

__all__ = ["CLASS_NAMES", "EncoderRecipe", "SpriteEncoder", "encode_frames", "load_sprite_encoder",
           "FrameComposer", "train_sprite_encoder"]

INPUT = 112  # frames are resized to this side; four stride-2 layers and one more give the 7 x 7 grid
GRID = 7
CHANNELS = 64
CELL_COVER = 0.15
CLASS_NAMES: tuple[str, ...] = (*(c.name for c in vocabulary.CLASSES), "background")
BACKGROUND = len(CLASS_NAMES) - 1


@dataclass(frozen=True)
class EncoderRecipe:
    """Everything the trained weights depend on besides the sprites' bytes (part of the cache key)."""

    version: int = 1
    seed: int = 0
    steps: int = 600
    batch_size: int = 24
    lr: float = 3e-3
    weight_decay: float = 1e-4
    size: int = 128  # the side of the composed training frames (the scene engine's default frame)
    max_objects: int = 4
    p_occluder: float = 0.3
    background_weight: float = 0.25
    sprites_per_class: int = 48  # the bank of varied sprites batches draw from
    backgrounds: int = 256


class SpriteEncoder(nn.Module):
    """``forward(frames (N, 3, H, W) in [0, 1]) -> {"map": (N, 64, 7, 7), "logits": (N, classes, 7, 7)}``."""

    def __init__(self, channels: int = CHANNELS, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        widths = (3, 24, 32, 48, channels)
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        # one stride-1 layer more: each cell sees its neighbours, so an object across a cell border is whole
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, frames: torch.Tensor, size: tuple[int, int] = (INPUT, INPUT)) -> dict[str, torch.Tensor]:
        """``size`` (height, width) the frames are resized to; other sizes than the default keep the network's
        stride of 16 and give a larger or smaller map (objects keep the scale of training when a frame is
        resized by ``INPUT / recipe.size``)."""
        x = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
        feature_map = self.trunk(x - 0.5)
        return {"map": feature_map, "logits": self.classifier(feature_map)}


# ---------------------------------------------------------------- training frames

def _backgrounds(rng: np.random.Generator, n: int, size: int, pool: str) -> list[np.ndarray]:
    """``n`` backgrounds as the scene engine draws them (plain, gradient, the pool's textures)."""
    from xmodal.data.synth.scene_render import background

    cfg = scenes.SceneConfig(height=size, width=size)
    return [background(scenes.Scene(0, 0, "train", cfg, scenes._background(rng, cfg, pool), [], float("-inf")))
            for _ in range(n)]


def _sprites(rng: np.random.Generator, per_class: int, size: int,
             ranges: dict[str, list[tuple[float, float]]]) -> list[list[np.ndarray]]:
    """Per class, ``per_class`` sprites at sizes, scales, rotations and tints drawn as the scene engine draws
    them (rendering a sprite costs milliseconds, so a batch draws from this bank)."""
    bank = []
    for name in CLASS_NAMES[:BACKGROUND]:
        row = []
        for _ in range(per_class):
            size_name = str(rng.choice(tuple(vocabulary.SIZES)))
            height = max(8, round(vocabulary.SIZES[size_name] * size * scenes._draw(rng, ranges["scale"])))
            rotation = round(scenes._draw(rng, ranges["rotation"]), 1)
            row.append(vocabulary.sprite(name, height, str(rng.choice(tuple(vocabulary.TINTS))), rotation))
        bank.append(row)
    return bank


@dataclass
class FrameComposer:
    """Composes frames from banks of backgrounds and sprites drawn with ``rng`` from the scene engine's
    ``pool`` of variations: ``"train"`` (what the encoder learns from) or ``"heldout"`` (the val and test
    scales, rotations and textures, for testing it)."""

    rng: np.random.Generator
    recipe: EncoderRecipe = EncoderRecipe()
    pool: str = "train"

    def __post_init__(self) -> None:
        if self.pool not in scenes.SPLIT_RANGES:
            raise ConfigError(f"pool must be one of {', '.join(scenes.SPLIT_RANGES)}, got {self.pool!r}")
        self.per_class = self.recipe.sprites_per_class
        self.backgrounds = _backgrounds(self.rng, self.recipe.backgrounds, self.recipe.size, self.pool)
        self.sprites = _sprites(self.rng, self.per_class, self.recipe.size, scenes.SPLIT_RANGES[self.pool])

    def batch(self, n: int, max_objects: int | None = None) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
        """``n`` frames ``(n, size, size, 3)`` uint8, their cell targets ``(n, 7, 7)`` (indices into
        :data:`CLASS_NAMES`) and the classes drawn in each frame, in drawing order (later ones on top)."""
        from xmodal.data.synth.scene_render import _wall

        rng, size, most = self.rng, self.recipe.size, max_objects or self.recipe.max_objects
        frames = np.empty((n, size, size, 3), np.uint8)
        owner = np.full((n, size, size), BACKGROUND, np.int64)
        drawn: list[list[int]] = []
        for i in range(n):
            frame = self.backgrounds[int(rng.integers(0, len(self.backgrounds)))].copy()
            if rng.random() < 0.5:
                frame = frame[:, ::-1].copy()
            classes = [int(c) for c in rng.integers(0, BACKGROUND, size=int(rng.integers(1, most + 1)))]
            for k in classes:
                spr = self.sprites[k][int(rng.integers(0, self.per_class))]
                h, w = spr.shape[:2]
                y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
                mask = spr[:, :, 3] > 0
                frame[y: y + h, x: x + w][mask] = spr[:, :, :3][mask]
                owner[i, y: y + h, x: x + w][mask] = k
            if rng.random() < self.recipe.p_occluder:  # the engine's wall, smaller so objects stay in view
                w, h = int(size * rng.uniform(0.15, 0.35)), int(size * rng.uniform(0.3, 0.6))
                x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                frame[y0: y0 + h, x0: x0 + w] = _wall(h, w)
                owner[i, y0: y0 + h, x0: x0 + w] = BACKGROUND
            frames[i] = frame
            drawn.append(classes)
        return frames, cell_targets(owner), drawn


def cell_targets(owner: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` pixel owners -> ``(N, 7, 7)``: per cell the class owning most pixels (background
    excluded) when it covers at least :data:`CELL_COVER` of the cell, else background."""
    n, h, w = owner.shape
    k = len(CLASS_NAMES)
    cell = (np.arange(h)[:, None] * GRID // h) * GRID + np.arange(w)[None, :] * GRID // w  # (H, W) cell ids
    codes = (np.arange(n)[:, None, None] * GRID * GRID + cell) * k + owner
    counts = np.bincount(codes.ravel(), minlength=n * GRID * GRID * k).reshape(n, GRID * GRID, k)
    cover = counts[:, :, :BACKGROUND] / np.bincount(cell.ravel())[None, :, None]
    best = cover.argmax(-1)
    keep = np.take_along_axis(cover, best[..., None], -1)[..., 0] >= CELL_COVER
    return np.where(keep, best, BACKGROUND).reshape(n, GRID, GRID)


def _to_input(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def train_sprite_encoder(recipe: EncoderRecipe = EncoderRecipe()) -> SpriteEncoder:
    """Train a :class:`SpriteEncoder` from ``recipe`` (fresh composed frames every step; one intra-op thread,
    so the result does not depend on the machine's core count). Returns it in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(recipe.seed)
        composer = FrameComposer(np.random.default_rng([recipe.seed, 7]), recipe)
        model = SpriteEncoder()
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps,
                                                    pct_start=0.15)
        # most cells are background: weighted down, so the rarer object cells steer the features
        weight = torch.ones(len(CLASS_NAMES))
        weight[BACKGROUND] = recipe.background_weight
        model.train()
        for _ in range(recipe.steps):
            frames, targets, _ = composer.batch(recipe.batch_size)
            logits = model(_to_input(frames))["logits"]
            loss = F.cross_entropy(logits, torch.from_numpy(targets), weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


# ---------------------------------------------------------------- cached weights and inference

def _inputs_digest() -> str:
    """sha256 of every glyph the vocabulary draws and every training texture: the data the weights learn."""
    from xmodal.data.synth.scene_render import _texture

    h = hashlib.sha256()
    for c in vocabulary.CLASSES:
        glyph = vocabulary._glyph(c.emoji)
        h.update(c.name.encode() + b"\0" + str(glyph.shape).encode() + glyph.tobytes())
    for name in scenes.TEXTURES["train"]:
        h.update(name.encode() + b"\0" + _texture(name).tobytes())
    h.update(repr(sorted(vocabulary.TINTS.items())).encode() + repr(vocabulary.TINT_STRENGTH).encode())
    return h.hexdigest()


def weights_key(recipe: EncoderRecipe = EncoderRecipe()) -> str:
    """The cache key of the weights trained from ``recipe`` on the current sprites and textures."""
    from xmodal.transforms.cache import make_key

    return make_key(_inputs_digest(), "sprite_encoder", asdict(recipe))


def load_sprite_encoder(cache_dir: str | None = None, recipe: EncoderRecipe = EncoderRecipe()) -> SpriteEncoder:
    """The encoder trained from ``recipe``: from the cache, or trained now (600 steps, 92 s measured on one core) and
    cached. Eval mode, gradients off."""
    from xmodal.transforms.cache import TransformCache

    cache = TransformCache(cache_dir)
    state = cache.get_or_compute(weights_key(recipe), lambda: train_sprite_encoder(recipe).state_dict(),
                                 meta={"recipe": str(asdict(recipe))})
    model = SpriteEncoder()
    model.load_state_dict(state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def encode_frames(encoder: SpriteEncoder, frames: np.ndarray, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """uint8 frames ``(F, H, W, 3)`` -> ``{"map": (F, 7, 7, 64), "pooled": (F, 64), "probs": (F, 7, 7,
    classes)}`` (channels last, as the benchmarks' pool5 features)."""
    maps, probs = [], []
    for a in range(0, len(frames), batch_size):
        out = encoder(_to_input(frames[a: a + batch_size]))
        maps.append(out["map"].permute(0, 2, 3, 1))
        probs.append(out["logits"].softmax(1).permute(0, 2, 3, 1))
    feature_map = torch.cat(maps)
    return {"map": feature_map, "pooled": feature_map.amax(dim=(1, 2)), "probs": torch.cat(probs)}


def frame_classes(probs: torch.Tensor) -> list[set[int]]:
    """The classes an encoded frame shows: those that are the argmax of at least one cell."""
    cells = probs.argmax(-1).flatten(1)  # (F, 49)
    return [set(row.tolist()) - {BACKGROUND} for row in cells]


def describe(recipe: EncoderRecipe = EncoderRecipe()) -> dict[str, Any]:
    """What the encoder is, for dataset cards and metrics files."""
    return {"name": "sprite_encoder", "recipe": asdict(recipe), "key": weights_key(recipe), "grid": GRID,
            "channels": CHANNELS, "classes": list(CLASS_NAMES)}
