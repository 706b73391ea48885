"""Render a scene graph (:mod:`xmodal.data.synth.scenes`): frames, a per-pixel object map, the soundtrack.

Frames composite each visible object's sprite (binary alpha) at its box in object order, then occluders on top;
the object map records which object owns each pixel, so the visible fraction of every object in every frame is
counted, not estimated. The soundtrack sums one stem per object: the object's source with its variation
(pitch shift with the tempo kept; playback rate, which changes pitch and tempo together; a start at one of the
recording's onsets; reverberation by an exponentially decaying noise
response; gain), tiled over each sounding interval and cut at its ends with 5 ms fades, so nothing of a source
leaks outside its intervals, plus low background noise. The pitch shift runs librosa's phase vocoder.
A stereo soundtrack pans every stem with the constant-power law from the object's horizontal position, frame by
frame, so where a sound comes from can be heard; mono (the default) is the plain sum.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from xmodal.data.synth import sources, vocabulary
from xmodal.data.synth.scenes import Scene, SceneObject, box_at, frame_times, state_at

SAMPLE_RATE = sources.SAMPLE_RATE


@dataclass
class Rendered:
    frames: np.ndarray  # (T, H, W, 3) uint8
    object_map: np.ndarray  # (T, H, W) int16: the id of the object owning the pixel, -1 background/occluder
    visible_fraction: dict[int, np.ndarray]  # object id -> (T,) fraction of its sprite pixels not covered


@functools.lru_cache(maxsize=8)
def _texture(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)(), np.float32)


def background(scene: Scene) -> np.ndarray:
    """uint8 (H, W, 3) background of the scene."""
    cfg, bg = scene.config, scene.background
    h, w = cfg.height, cfg.width
    colour = np.asarray(bg["colour"], np.float32)
    img: np.ndarray
    if bg["kind"] == "plain":
        img = np.broadcast_to(colour, (h, w, 3)).copy()
    elif bg["kind"] == "gradient":
        ramp = np.linspace(0.0, 1.0, h if bg["vertical"] else w, dtype=np.float32)
        ramp = ramp[:, None, None] if bg["vertical"] else ramp[None, :, None]
        img = np.broadcast_to((1 - ramp) * colour + ramp * np.asarray(bg["colour2"], np.float32), (h, w, 3))
    else:  # a light, colour-washed crop of a real texture, so sprites stay distinct from it
        y, x = bg["offset"]
        gray = _texture(bg["texture"])[y: y + h, x: x + w, None] / 255.0
        img = colour * (0.55 + 0.45 * gray)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _wall(h: int, w: int) -> np.ndarray:
    """A brick-red wall with darker mortar lines: the occluder's look."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (150, 60, 40)
    img[::8] = (90, 80, 80)
    return img


def render_frames(scene: Scene, times: np.ndarray | None = None) -> Rendered:
    """Frames at ``times`` (seconds; default every frame of the clip) with the object map."""
    cfg = scene.config
    times = frame_times(cfg) if times is None else np.asarray(times, np.float64)
    base = background(scene)
    frames = np.empty((len(times), cfg.height, cfg.width, 3), np.uint8)
    omap = np.full((len(times), cfg.height, cfg.width), -1, np.int16)
    area: dict[int, np.ndarray] = {o.id: np.zeros(len(times)) for o in scene.objects}
    for i, t in enumerate(times):
        frame = base.copy()
        for o in scene.objects:
            st = state_at(o, float(t), cfg)
            if st is None:
                continue
            x, y, h, tint = st
            spr = vocabulary.sprite(o.cls, h, tint, o.rotation)
            mask = spr[:, :, 3] > 0
            region = frame[y: y + spr.shape[0], x: x + spr.shape[1]]
            region[mask] = spr[:, :, :3][mask]
            omap[i, y: y + spr.shape[0], x: x + spr.shape[1]][mask] = o.id
            area[o.id][i] = mask.sum()
        for x0, y0, x1, y1 in scene.occluders:
            frame[y0:y1, x0:x1] = _wall(y1 - y0, x1 - x0)
            omap[i, y0:y1, x0:x1] = -1
        frames[i] = frame
    counts = {o.id: np.array([(omap[i] == o.id).sum() for i in range(len(times))]) for o in scene.objects}
    fraction = {k: np.where(area[k] > 0, counts[k] / np.maximum(area[k], 1), 0.0) for k in area}
    return Rendered(frames, omap, fraction)


# ---------------------------------------------------------------- audio

def _vary(wave: np.ndarray, sound: dict) -> np.ndarray:
    """Pitch shift (tempo kept), playback-rate change (resample: pitch and tempo move together) and
    reverberation."""
    from scipy.signal import fftconvolve, resample_poly

    if sound.get("pitch", 0.0):
        import librosa

        # librosa's phase vocoder stretches by the pitch factor, then a polyphase resample restores the length:
        # the same route as librosa.effects.pitch_shift, with scipy's resampler (3x cheaper than soxr_hq here)
        factor = Fraction(2 ** (sound["pitch"] / 12)).limit_denominator(50)
        # 32-ms frames: the shortest source (a 0.12-s bell strike) still spans several
        wave = librosa.effects.time_stretch(wave, rate=float(1 / factor), n_fft=512, hop_length=128)
        wave = resample_poly(wave, factor.denominator, factor.numerator).astype(np.float32)
    rate = Fraction(sound["rate"]).limit_denominator(50)
    if rate != 1:
        wave = resample_poly(wave, rate.denominator, rate.numerator).astype(np.float32)
    t60 = float(sound["reverb_t60"])
    if t60 > 0.02:
        rng = np.random.default_rng(sound["noise_seed"])
        n = int(t60 * SAMPLE_RATE)
        ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * np.arange(n) / n).astype(np.float32)
        ir[0] = 0.0
        wet = fftconvolve(wave, ir)[: len(wave)].astype(np.float32)
        wet *= 0.5 * np.sqrt(np.mean(wave**2)) / max(float(np.sqrt(np.mean(wet**2))), 1e-9)
        wave = wave + wet
    return wave


def crop_start(wave: np.ndarray, crop: int, split: str) -> int:
    """The sample where playback of a recording starts: one of its onsets (a 20-ms frame within 30 dB of the
    loudest after a quieter one, or the first sample). Training uses the even-numbered onsets, val and test the
    odd-numbered ones, so held-out clips start the recording at places training never does (when it has more
    than one onset)."""
    hop = SAMPLE_RATE // 50
    n = len(wave) // hop
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    active = rms >= rms.max() * 10 ** (-30 / 20)
    onsets = [0] + [i * hop for i in range(1, n) if active[i] and not active[i - 1]]
    parity = 0 if split == "train" else 1
    mine = onsets[parity::2] or onsets[:1]
    return int(mine[crop % len(mine)])


def object_stem(scene: Scene, obj: SceneObject) -> np.ndarray:
    """The object's sound over the whole clip (float32, zero outside its sounding intervals)."""
    n = round(scene.config.duration * SAMPLE_RATE)
    stem = np.zeros(n, np.float32)
    if not obj.sounding:
        return stem
    src = vocabulary.get_class(obj.cls).source
    wave = _vary(sources.load_source(src, obj.sound["variant"], scene.split), obj.sound)
    start = crop_start(wave, obj.sound.get("crop", 0), scene.split)
    wave = np.concatenate([wave[start:], wave[:start]])  # the loop begins at that onset
    gap = np.zeros(int(0.15 * SAMPLE_RATE), np.float32)
    gain = 10 ** (obj.sound["gain_db"] / 20)
    fade = np.linspace(0, 1, SAMPLE_RATE // 200, dtype=np.float32)
    for s, e in obj.sounding:
        a, b = round(s * SAMPLE_RATE), round(e * SAMPLE_RATE)
        reps = int(np.ceil((b - a) / (len(wave) + len(gap)))) + 1
        seg = np.tile(np.concatenate([wave, gap]), reps)[: b - a].copy()
        seg[: len(fade)] *= fade
        seg[-len(fade):] *= fade[::-1]
        stem[a:b] += gain * seg
    return stem


def pan_gains(pan: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power panning: ``pan`` in [-1 (left), 1 (right)] -> left and right gains
    ``cos(theta), sin(theta)`` with ``theta = (pan + 1) * pi / 4``, so ``left**2 + right**2 == 1`` and the centre
    is ``1 / sqrt(2)`` on both sides."""
    theta = (np.clip(pan, -1.0, 1.0) + 1.0) * (np.pi / 4)
    return np.cos(theta), np.sin(theta)


def object_pan(scene: Scene, obj: SceneObject) -> np.ndarray:
    """Pan position per frame (``frame_times``): ``2 * centre_x / width - 1`` of the object's box where it is on
    screen; at frames where it is not, the position of the nearest frame where it is; 0 (the centre) for an
    object never on screen (an off-screen sound)."""
    cfg = scene.config
    times = frame_times(cfg)
    pan = np.full(len(times), np.nan)
    for i, t in enumerate(times):
        box = box_at(obj, float(t), cfg)
        if box is not None:
            pan[i] = np.clip((box[0] + box[2]) / cfg.width - 1.0, -1.0, 1.0)
    seen = np.flatnonzero(~np.isnan(pan))
    if not len(seen):
        return np.zeros(len(times))
    nearest = seen[np.abs(np.arange(len(times))[:, None] - seen[None, :]).argmin(axis=1)]
    return pan[nearest]


def _pan_stem(scene: Scene, obj: SceneObject, stem: np.ndarray) -> np.ndarray:
    """``(2, samples)``: the stem panned sample by sample, the pan interpolated linearly between frame times."""
    t = np.arange(len(stem)) / SAMPLE_RATE
    left, right = pan_gains(np.interp(t, frame_times(scene.config), object_pan(scene, obj)))
    return np.stack([stem * left, stem * right]).astype(np.float32)


def render_audio(scene: Scene, with_stems: bool = False, stereo: bool = False):
    """Float32 soundtrack, mono ``(samples,)`` or, when ``stereo``, ``(2, samples)`` with every object panned by
    :func:`object_pan` (background noise the same on both sides); when ``with_stems``, also the mono
    ``{object id: stem}``."""
    n = round(scene.config.duration * SAMPLE_RATE)
    stems = {o.id: object_stem(scene, o) for o in scene.objects}
    mix = np.zeros((2, n) if stereo else n, np.float32)
    for o in scene.objects:
        if not stereo:
            mix += stems[o.id]
        elif o.sounding:
            mix += _pan_stem(scene, o, stems[o.id])
    if np.isfinite(scene.noise_db):
        rng = np.random.default_rng([scene.seed, scene.index, 7])
        noise = np.cumsum(rng.standard_normal(n)).astype(np.float32)  # brown noise, detrended below
        noise -= np.convolve(noise, np.ones(801, np.float32) / 801, mode="same")
        noise *= 10 ** (scene.noise_db / 20) / max(float(np.sqrt(np.mean(noise**2))), 1e-9)
        mix += noise  # broadcast onto both channels of a stereo mix
    mix = np.clip(mix, -1, 1)
    return (mix, stems) if with_stems else mix


def write_clip(scene: Scene, path: str | Path, rendered: Rendered | None = None,
               audio: np.ndarray | None = None, stereo: bool = False) -> None:
    """Write the scene as an MP4 (H.264 video, AAC audio track at 16 kHz; stereo when ``stereo`` or when
    ``audio`` is ``(2, samples)``)."""
    from xmodal.data.io.video import write_video

    rendered = rendered or render_frames(scene)
    audio = render_audio(scene, stereo=stereo) if audio is None else audio
    # veryfast x264 and the fast AAC coder: 3-4x quicker encoding than the defaults, at these sizes the same look
    write_video(path, rendered.frames, scene.config.fps, audio=audio, sample_rate=SAMPLE_RATE,
                video_options={"preset": "veryfast"}, audio_options={"aac_coder": "fast"})


def object_map_at(scene: Scene, t: float) -> tuple[np.ndarray, dict[int, int]]:
    """int16 (H, W) map of the object owning each pixel at time ``t`` (-1: background or occluder), and the
    opaque pixel count of each object on screen, from the same compositing as :func:`render_frames`."""
    cfg = scene.config
    omap = np.full((cfg.height, cfg.width), -1, np.int16)
    area: dict[int, int] = {}
    for o in scene.objects:
        st = state_at(o, t, cfg)
        if st is None:
            continue
        x, y, h, tint = st
        mask = vocabulary.sprite(o.cls, h, tint, o.rotation)[:, :, 3] > 0
        omap[y: y + mask.shape[0], x: x + mask.shape[1]][mask] = o.id
        area[o.id] = int(mask.sum())
    for x0, y0, x1, y1 in scene.occluders:
        omap[y0:y1, x0:x1] = -1
    return omap, area


def visible_fractions_at(scene: Scene, t: float) -> dict[int, float]:
    """The fraction of each object's sprite pixels not covered (by later objects or occluders) at time ``t``;
    0 for an object not on screen. Exact, from the same compositing as :func:`render_frames`."""
    omap, area = object_map_at(scene, t)
    return {o.id: float((omap == o.id).sum()) / area[o.id] if o.id in area else 0.0 for o in scene.objects}
