"""A seeded generator of 2-D audio-visual scenes over time, with exact ground truth.

A scene is a pure function of ``(seed, index, split, config)``: :func:`generate_scene` draws a scene graph of
several objects of :mod:`xmodal.data.synth.vocabulary` on a background (plain, gradient or a real skimage
texture). Each object is visible over some intervals and sounding over others, drawn independently, so a clip
holds visible silent objects and off-screen sounds; objects move (static, linear, bouncing; later objects are
drawn over earlier ones, so they occlude), may grow or change colour, and props are visual distractors.
Interval boundaries lie on ``config.time_grid`` seconds.

Ground truth follows from the graph by construction: :func:`state_at` gives an object's box at any time (its
sprite's rectangle, see vocabulary.sprite), :func:`segment_labels` the per-1-s audio, visual and audio-visual
labels, :func:`actions` the timed actions. Rendering and mixing live in :mod:`xmodal.data.synth.scene_render`.

Held-out splits ("val", "test") draw sprite scale, rotation, playback rate and reverberation from ranges
disjoint from training (:data:`SPLIT_RANGES`), and textures, melodies, sentences and voices from disjoint pools.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from xmodal.data.synth import sources, vocabulary
from xmodal.errors import ConfigError

SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# Parameter ranges per split; each held-out range is disjoint from the training one (a union of two intervals
# around it where the quantity has a natural centre).
SPLIT_RANGES: dict[str, dict[str, list[tuple[float, float]]]] = {
    "train": {"scale": [(0.92, 1.08)], "rotation": [(-8.0, 8.0)], "rate": [(0.94, 1.06)],
              "pitch": [(-2.0, 2.0)], "reverb_t60": [(0.0, 0.3)], "gain_db": [(-6.0, 0.0)]},
    "heldout": {"scale": [(0.84, 0.92), (1.08, 1.16)], "rotation": [(-14.0, -8.0), (8.0, 14.0)],
                "rate": [(0.88, 0.94), (1.06, 1.12)], "pitch": [(-4.0, -2.0), (2.0, 4.0)],
                "reverb_t60": [(0.3, 0.5)], "gain_db": [(-6.0, 0.0)]},
}
TEXTURES = {"train": ("brick", "grass"), "heldout": ("gravel", "moon")}
MOTIONS = ("static", "linear", "bounce")
SEEN = 0.5  # an object is seen in a frame when at least this fraction of its sprite's pixels is uncovered


@dataclass(frozen=True)
class SceneConfig:
    """What scenes look like. Sizes are (height, width) pixels; times are seconds."""

    duration: float = 10.0
    fps: float = 8.0
    height: int = 128
    width: int = 128
    min_objects: int = 2
    max_objects: int = 4
    classes: tuple[str, ...] = vocabulary.SOUNDING
    max_props: int = 1
    p_silent: float = 0.2  # an object that is visible but never sounds
    p_offscreen: float = 0.15  # an object that sounds but is never visible
    p_always_visible: float = 0.5
    motions: tuple[str, ...] = MOTIONS
    p_grow: float = 0.15
    p_recolour: float = 0.15
    time_grid: float = 1.0
    min_interval: float = 2.0
    noise_db: tuple[float, float] = (-50.0, -40.0)  # background noise level (dBFS RMS); None-like: (-inf, -inf)
    occluder: float = 0.0  # probability that a wall occludes part of the frame
    repeat_class: float = 0.3  # probability that an object repeats an earlier object's class
    tints: tuple[str, ...] = tuple(vocabulary.TINTS)
    sizes: tuple[str, ...] = tuple(vocabulary.SIZES)
    backgrounds: tuple[str, ...] = ("plain", "gradient", "texture")
    # "free": roles drawn independently; "event": object 0 is one audio-visual event (one visible and one
    # overlapping sounding interval) and every other object is silent or off screen, never both seen and heard;
    # "one_source": every object visible all along, exactly one sounding all along (none with p_negative).
    mode: str = "free"
    p_negative: float = 0.0
    p_pitch: float = 0.5

    def validate(self) -> SceneConfig:
        if self.duration <= 0 or self.fps <= 0 or self.height < 32 or self.width < 32:
            raise ConfigError("scene config: duration and fps must be positive, height and width >= 32")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ConfigError("scene config: need 1 <= min_objects <= max_objects")
        for name in self.classes:
            if not vocabulary.get_class(name).sounding:
                raise ConfigError(f"scene config: class {name!r} has no sound (props go in max_props)")
        for m in self.motions:
            if m not in MOTIONS:
                raise ConfigError(f"scene config: unknown motion {m!r}; known: {', '.join(MOTIONS)}")
        if self.mode not in ("free", "event", "one_source"):
            raise ConfigError(f"scene config: unknown mode {self.mode!r}; known: free, event, one_source")
        if self.mode != "free" and len(self.classes) < 2:
            raise ConfigError("scene config: modes event and one_source need at least two classes")
        if self.min_interval > self.duration:
            raise ConfigError("scene config: min_interval is longer than the clip")
        return self

    @property
    def num_frames(self) -> int:
        return round(self.duration * self.fps)


@dataclass
class SceneObject:
    id: int
    cls: str
    tint: str
    size: str
    height_px: int
    rotation: float
    visible: list[list[float]]  # [[start, end), ...] seconds
    sounding: list[list[float]]
    motion: dict[str, Any]  # {"kind", "x0", "y0", "vx", "vy"}: top-left pixels, pixels per second
    sound: dict[str, Any] = field(default_factory=dict)  # {"variant", "gain_db", "rate", "reverb_t60"}
    grow: list[float] | None = None  # [t0, t1, factor]: height scales linearly from 1 to factor over [t0, t1]
    recolour: list[Any] | None = None  # [t, tint]: the tint from time t on

    @property
    def kind(self) -> str:
        return vocabulary.get_class(self.cls).kind


@dataclass
class Scene:
    seed: int
    index: int
    split: str
    config: SceneConfig
    background: dict[str, Any]
    objects: list[SceneObject]
    noise_db: float
    occluders: list[list[int]] = field(default_factory=list)  # [[x0, y0, x1, y1]] drawn over everything

    @property
    def id(self) -> str:
        return scene_id(self.seed, self.index, self.split)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = asdict(self.config)
        d["id"] = self.id
        return d


def scene_id(seed: int, index: int, split: str) -> str:
    """The clip id of scene ``(seed, index, split)``: ``scene_<split>_<seed>_<index, 6 digits>``."""
    return f"scene_{split}_{seed}_{index:06d}"


def _pool(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return "train" if split == "train" else "heldout"


def _draw(rng: np.random.Generator, ranges: list[tuple[float, float]]) -> float:
    widths = np.array([b - a for a, b in ranges])
    k = int(rng.choice(len(ranges), p=widths / widths.sum())) if widths.sum() > 0 else 0
    a, b = ranges[k]
    return float(rng.uniform(a, b))


def _intervals(rng: np.random.Generator, cfg: SceneConfig, always: bool) -> list[list[float]]:
    """One or two disjoint intervals on the time grid, each at least ``min_interval`` long (or the whole clip)."""
    if always:
        return [[0.0, cfg.duration]]
    steps = round(cfg.duration / cfg.time_grid)
    min_steps = max(1, math.ceil(cfg.min_interval / cfg.time_grid))
    if rng.random() < 0.35 and steps >= 2 * min_steps + 1:
        a = int(rng.integers(0, steps - 2 * min_steps))
        b = int(rng.integers(a + min_steps, steps - min_steps))
        c = int(rng.integers(b + 1, steps - min_steps + 1))
        d = int(rng.integers(c + min_steps, steps + 1))
        spans = [(a, b), (c, d)]
    else:
        length = int(rng.integers(min_steps, steps + 1))
        start = int(rng.integers(0, steps - length + 1))
        spans = [(start, start + length)]
    g = cfg.time_grid
    return [[round(s * g, 6), round(e * g, 6)] for s, e in spans]


def _event_roles(rng: np.random.Generator, cfg: SceneConfig, target: bool, visible: list[list[float]],
                 sounding: list[list[float]]) -> tuple[list[list[float]], list[list[float]]]:
    """Roles of the event mode: the target is seen and heard over one overlapping span of at least one time
    step; a distractor is either silent (visible) or off screen (sounding)."""
    if not target:
        return (visible, []) if rng.random() < 0.5 else ([], sounding)
    while True:
        vis, snd = _intervals(rng, cfg, False)[:1], _intervals(rng, cfg, False)[:1]
        if min(vis[0][1], snd[0][1]) - max(vis[0][0], snd[0][0]) >= cfg.time_grid:
            return vis, snd


def _motion(rng: np.random.Generator, cfg: SceneConfig, w: int, h: int) -> dict[str, Any]:
    """A trajectory whose every position keeps the whole sprite (at its largest size) inside the frame."""
    kind = str(rng.choice(cfg.motions))
    x0 = float(rng.uniform(0, cfg.width - w))
    y0 = float(rng.uniform(0, cfg.height - h))
    if kind == "static":
        return {"kind": kind, "x0": x0, "y0": y0, "vx": 0.0, "vy": 0.0}
    if kind == "linear":  # the end point is inside too, so the whole (convex) path is
        x1 = float(rng.uniform(0, cfg.width - w))
        y1 = y0 + float(rng.uniform(-0.2, 0.2)) * (cfg.height - h)
        y1 = min(max(y1, 0.0), float(cfg.height - h))
        return {"kind": kind, "x0": x0, "y0": y0, "vx": (x1 - x0) / cfg.duration, "vy": (y1 - y0) / cfg.duration}
    speed = float(rng.uniform(0.3, 0.8)) * cfg.width / 4.0
    return {"kind": kind, "x0": x0, "y0": y0, "vx": speed * float(rng.choice([-1, 1])),
            "vy": speed * float(rng.uniform(-0.5, 0.5))}


def _reflect(p: float, span: float) -> float:
    """Position ``p`` folded into [0, span] as a ball bouncing between two walls."""
    if span <= 0:
        return 0.0
    m = p % (2 * span)
    return m if m <= span else 2 * span - m


def generate_scene(seed: int, index: int, split: str = "train", config: SceneConfig | None = None) -> Scene:
    """The scene graph for ``(seed, index, split)``; the same arguments always give the same scene."""
    cfg = (config or SceneConfig()).validate()
    pool = _pool(split)
    ranges = SPLIT_RANGES[pool]
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], int(index)])
    background = _background(rng, cfg, pool)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    n_props = int(rng.integers(0, cfg.max_props + 1)) if cfg.max_props else 0
    # one_source: the sounding object is drawn uniformly, independent of its size and place; -1 is a silent clip
    sounder = int(rng.integers(0, n)) if rng.random() >= cfg.p_negative else -1
    objects: list[SceneObject] = []
    placed: list[tuple[float, float, float, float]] = []
    for i in range(n + n_props):
        prop = i >= n
        if prop:
            cls = str(rng.choice(vocabulary.PROPS))
        elif cfg.mode != "free":  # one event / one source: no class repeats, so class labels stay exact
            used = {o.cls for o in objects}
            cls = str(rng.choice([c for c in cfg.classes if c not in used] or list(cfg.classes)))
        elif objects and rng.random() < cfg.repeat_class:
            cls = objects[int(rng.integers(0, len(objects)))].cls
        else:
            cls = str(rng.choice(cfg.classes))
        size = str(rng.choice(cfg.sizes))
        tint = str(rng.choice(cfg.tints))
        height_px = max(8, round(vocabulary.SIZES[size] * cfg.height * _draw(rng, ranges["scale"])))
        rotation = round(_draw(rng, ranges["rotation"]), 2)
        grow = None
        if not prop and rng.random() < cfg.p_grow:
            t0 = float(rng.integers(0, int(cfg.duration / 2)))
            grow = [t0, t0 + float(rng.integers(2, int(cfg.duration / 2) + 1)), 1.4]
        max_h = round(height_px * (grow[2] if grow else 1.0))
        probe = vocabulary.sprite(cls, max_h, "plain", rotation)
        motion = _motion(rng, cfg, probe.shape[1], probe.shape[0])
        for _ in range(50 if cfg.mode == "one_source" else 0):  # localisation: objects never overlap
            x, y = motion["x0"], motion["y0"]
            if not any(x < b[2] and b[0] < x + probe.shape[1] and y < b[3] and b[1] < y + probe.shape[0]
                       for b in placed):
                break
            motion = _motion(rng, cfg, probe.shape[1], probe.shape[0])
        placed.append((motion["x0"], motion["y0"], motion["x0"] + probe.shape[1], motion["y0"] + probe.shape[0]))
        role = rng.random()
        offscreen = not prop and role < cfg.p_offscreen
        silent = prop or (not offscreen and role < cfg.p_offscreen + cfg.p_silent)
        visible = [] if offscreen else _intervals(rng, cfg, rng.random() < cfg.p_always_visible)
        sounding = [] if silent else _intervals(rng, cfg, False)
        if cfg.mode == "event" and not prop:
            visible, sounding = _event_roles(rng, cfg, i == 0, visible, sounding)
        elif cfg.mode == "one_source":
            visible, sounding = [[0.0, cfg.duration]], ([[0.0, cfg.duration]] if i == sounder else [])
        recolour = None
        if visible and rng.random() < cfg.p_recolour:
            s, e = visible[0]
            if e - s >= 2 * cfg.time_grid:
                t = round(s + cfg.time_grid * int(rng.integers(1, int((e - s) / cfg.time_grid))), 6)
                recolour = [t, str(rng.choice([c for c in cfg.tints if c != tint]))]
        src = vocabulary.get_class(cls).source
        sound = {} if not src else {
            "variant": int(rng.integers(0, sources.variants(src, split))),
            "gain_db": round(_draw(rng, ranges["gain_db"]), 2), "rate": round(_draw(rng, ranges["rate"]), 4),
            "reverb_t60": round(_draw(rng, ranges["reverb_t60"]), 3), "noise_seed": int(rng.integers(0, 2**31)),
            # a pitch shift (semitones, tempo kept) on half of the objects: it costs a phase vocoder pass
            "pitch": round(_draw(rng, ranges["pitch"]), 2) if rng.random() < cfg.p_pitch else 0.0,
            # where in the recording playback starts: one of its onsets (even-numbered ones for training,
            # odd-numbered ones for the held-out splits, see scene_render.crop_start)
            "crop": int(rng.integers(0, 1000))}
        objects.append(SceneObject(i, cls, tint, size, height_px, rotation, visible, sounding, motion, sound,
                                   grow, recolour))
    if cfg.mode == "event":  # the event's object is drawn last, so no distractor covers it
        objects = [replace(o, id=k) for k, o in enumerate(objects[1:] + objects[:1])]
    occluders = []
    if cfg.occluder and rng.random() < cfg.occluder:
        w, h = int(cfg.width * rng.uniform(0.3, 0.45)), int(cfg.height * rng.uniform(0.45, 0.7))
        x0, y0 = int(rng.integers(0, cfg.width - w + 1)), int(rng.integers(0, cfg.height - h + 1))
        occluders.append([x0, y0, x0 + w, y0 + h])
    noise_db = float(rng.uniform(*cfg.noise_db)) if np.isfinite(cfg.noise_db[0]) else float("-inf")
    return Scene(int(seed), int(index), split, cfg, background, objects, noise_db, occluders)


def _background(rng: np.random.Generator, cfg: SceneConfig, pool: str) -> dict[str, Any]:
    kind = str(rng.choice(cfg.backgrounds))
    light = [int(v) for v in rng.integers(150, 256, size=3)]
    if kind == "plain":
        return {"kind": kind, "colour": light}
    if kind == "gradient":
        return {"kind": kind, "colour": light, "colour2": [int(v) for v in rng.integers(150, 256, size=3)],
                "vertical": bool(rng.random() < 0.5)}
    return {"kind": kind, "texture": str(rng.choice(TEXTURES[pool])), "colour": light,
            "offset": [int(rng.integers(0, 512 - cfg.height)), int(rng.integers(0, 512 - cfg.width))]}


# ---------------------------------------------------------------- ground truth from the graph

def _inside(t: float, intervals: list[list[float]]) -> bool:
    return any(s <= t < e for s, e in intervals)


def state_at(obj: SceneObject, t: float, cfg: SceneConfig) -> tuple[int, int, int, str] | None:
    """``(x, y, sprite height, tint)`` of ``obj`` at time ``t`` (top-left pixel), or None when not visible."""
    if not _inside(t, obj.visible):
        return None
    h = obj.height_px
    if obj.grow:
        t0, t1, factor = obj.grow
        frac = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        h = round(obj.height_px * (1 + (factor - 1) * frac))
    tint = obj.recolour[1] if obj.recolour and t >= obj.recolour[0] else obj.tint
    max_h = round(obj.height_px * (obj.grow[2] if obj.grow else 1.0))
    big = vocabulary.sprite(obj.cls, max_h, "plain", obj.rotation)
    m = obj.motion
    x, y = m["x0"] + m["vx"] * t, m["y0"] + m["vy"] * t
    if m["kind"] == "bounce":
        x, y = _reflect(x, cfg.width - big.shape[1]), _reflect(y, cfg.height - big.shape[0])
    return round(x), round(y), h, tint


def box_at(obj: SceneObject, t: float, cfg: SceneConfig) -> list[int] | None:
    """Pixel box ``[x0, y0, x1, y1]`` (end exclusive) of ``obj`` at time ``t``, or None when not visible."""
    st = state_at(obj, t, cfg)
    if st is None:
        return None
    x, y, h, tint = st
    spr = vocabulary.sprite(obj.cls, h, tint, obj.rotation)
    return [x, y, x + spr.shape[1], y + spr.shape[0]]


def frame_times(cfg: SceneConfig) -> np.ndarray:
    return np.arange(cfg.num_frames) / cfg.fps


def _overlap(intervals: list[list[float]], a: float, b: float) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for s, e in intervals)


def seen_frames(scene: Scene) -> dict[int, np.ndarray]:
    """Per object, the frames (bool, T) in which it is seen: on screen with at least half of its sprite's pixels
    uncovered (by later objects or occluders), counted on the composited object map."""
    from xmodal.data.synth.scene_render import visible_fractions_at  # the renderer imports this module

    fractions = [visible_fractions_at(scene, float(t)) for t in frame_times(scene.config)]
    return {o.id: np.array([f[o.id] >= SEEN for f in fractions]) for o in scene.objects}


def segment_labels(scene: Scene, segment: float = 1.0) -> dict[str, list[list[str]]]:
    """Per segment ``[k, k + segment)``: the sorted classes heard ("audio"), seen ("visual") and both heard and
    seen ("av", per class, as AVVP defines it). A class is heard in a segment when one of its objects sounds for
    more than half of it, and seen when one of its objects is seen (:func:`seen_frames`) in more than half of
    the segment's frames."""
    n = round(scene.config.duration / segment)
    seen_at = seen_frames(scene)
    times = frame_times(scene.config)
    out: dict[str, list[list[str]]] = {"audio": [], "visual": [], "av": []}
    for k in range(n):
        a, b = k * segment, (k + 1) * segment
        inside = (times >= a - 1e-9) & (times < b - 1e-9)
        heard = {o.cls for o in scene.objects if _overlap(o.sounding, a, b) > segment / 2}
        seen = {o.cls for o in scene.objects if o.kind != "prop" and seen_at[o.id][inside].mean() > 0.5}
        out["audio"].append(sorted(heard))
        out["visual"].append(sorted(seen))
        out["av"].append(sorted(heard & seen))
    return out


def actions(scene: Scene) -> list[dict[str, Any]]:
    """Timed actions sorted by start: appear / disappear / start sounding / stop sounding (instants), sound,
    move left / move right, grow (spans) and change colour (instant), each with its object id."""
    cfg = scene.config
    out: list[dict[str, Any]] = []
    for o in scene.objects:
        for s, e in o.visible:
            if s > 0:
                out.append({"object": o.id, "action": "appear", "start": s, "end": s})
            if e < cfg.duration:
                out.append({"object": o.id, "action": "disappear", "start": e, "end": e})
        for s, e in o.sounding:
            out.append({"object": o.id, "action": "sound", "start": s, "end": e})
            if s > 0:
                out.append({"object": o.id, "action": "start sounding", "start": s, "end": s})
            if e < cfg.duration:
                out.append({"object": o.id, "action": "stop sounding", "start": e, "end": e})
        out.extend(_moves(o, cfg))
        if o.grow and o.visible:
            out.append({"object": o.id, "action": "grow", "start": o.grow[0], "end": o.grow[1]})
        if o.recolour:
            out.append({"object": o.id, "action": "change colour", "start": o.recolour[0], "end": o.recolour[0],
                        "to": o.recolour[1]})
    return sorted(out, key=lambda a: (a["start"], a["end"], a["object"], a["action"]))


def _moves(o: SceneObject, cfg: SceneConfig) -> list[dict[str, Any]]:
    """Spans of visible frames over which the object's x moves steadily left or right (at least 0.5 s)."""
    times = frame_times(cfg)
    xs = [None if (st := state_at(o, t, cfg)) is None else st[0] for t in times]
    out, cur, start = [], None, 0.0
    for i in range(1, len(times) + 1):
        d = None
        x, x_before = (xs[i], xs[i - 1]) if i < len(times) else (None, None)
        if x is not None and x_before is not None:
            d = "move right" if x > x_before else "move left" if x < x_before else None
        if d != cur:
            if cur is not None and times[i - 1] - start >= 0.5:
                out.append({"object": o.id, "action": cur, "start": round(float(start), 6),
                            "end": round(float(times[i - 1]), 6)})
            cur, start = d, times[i - 1]
    return out


def annotation(scene: Scene) -> dict[str, Any]:
    """The full ground truth of a scene as JSON-ready data: the graph, per-frame boxes (None when hidden),
    segment labels and actions."""
    cfg = scene.config
    times = frame_times(cfg)
    d = scene.to_json()
    d["boxes"] = {str(o.id): [box_at(o, float(t), cfg) for t in times] for o in scene.objects}
    d["segments"] = segment_labels(scene)
    d["actions"] = actions(scene)
    return d
