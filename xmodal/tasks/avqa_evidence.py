"""The encoders' class evidence read for the objects a question names (MUSIC-AVQA): per-segment streams for
AVST's evidence branch and for the single-modality baselines.

A question names up to two instruments (``Is the <Object> in the video making sound?``, ``Which sounds first,
the <Object> or the <Object>?``); :func:`named_classes` finds them among its tokens by the encoders' class
names (:data:`xmodal.tasks.avqa_features.EVIDENCE_CLASSES`), in order. :func:`segment_evidence` reads, for
every 1-s segment, the class evidence of ``audio_classes`` ``(B, T, K)`` (heard, sigmoid) and
``visual_classes`` ``(B, T, H, W, K)`` (each cell's softmax) for those classes and over all classes:

- ``audio`` (3): how strongly each named class is heard, and the sum over classes (how many are heard); with
  the clip's loudness (:func:`clip_loudness`: ``Is the <Object> louder than the <Object>?``) 5 more: each
  named class's loudness, their difference, the segment's level, and the sum over classes of each class's
  maximum over the clip (how many classes are heard at some time, where the per-segment sum misses sources
  that never sound together);
- ``visual`` (10): for each named class its mass (the sum of its cells' probabilities: a count of cells, which
  grows with the number of instances, where a softmax-weighted mean over cells does not), its peak cell, its
  horizontal centroid (-0.5 left edge .. 0.5 right edge) and that centroid weighted by the probability that
  the class first appears in this segment (:func:`first_fire`; summed over segments: where it first appears);
  the mass of every instrument and the number of classes present (the sum over classes of each class's peak);
- ``joint`` (6): each named class heard times seen, the sum over classes of heard times seen (how many sound
  while on screen), the mass and centroid of the map of cells weighted by how strongly their class is heard
  (where the sounding objects are), and that centroid weighted by the probability that something first sounds
  on screen in this segment.

:func:`xmodal.tasks.models.avst.clip_summary` pools them over the clip (mean, maximum, soft onset).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xmodal.errors import ShapeError
from xmodal.tasks.models.avst import clip_summary

__all__ = ["AUDIO_DIM", "JOINT_DIM", "LOUDNESS_DIM", "VISUAL_DIM", "class_templates", "clip_loudness",
           "clip_summary", "named_classes", "segment_evidence"]

NAMED = 2  # a MUSIC-AVQA template names at most two objects
AUDIO_DIM, VISUAL_DIM, JOINT_DIM, LOUDNESS_DIM = NAMED + 1, 4 * NAMED + 2, NAMED + 4, NAMED + 3
EPS = 1e-3
ON = 0.2  # a class sounds in a segment where its unmixed power is at least this fraction of its clip maximum
ITERATIONS = 300  # multiplicative updates (a zero activity is neared slowly: 6e-3 dB off on the hand-worked case)
FLOOR_DB = -30.0  # loudness and level below this (relative to the clip's mean power) are clipped to it


def clip_loudness(power: np.ndarray, templates: np.ndarray, band_width: np.ndarray | None = None
                  ) -> dict[str, torch.Tensor]:
    """``{"audio_loudness": (K,), "audio_level": (T,)}`` of one clip from its per-segment band power ``power``
    ``(T, M)`` (natural log of the arithmetic mean mel power per band, ``audio_power`` of
    :mod:`xmodal.tasks.avqa_features`) and the classes' spectral templates ``templates`` ``(K, M)`` (each
    class's share of its power per band, rows summing to one: :func:`class_templates`).

    A band's mel power times its filter's width (``band_width``, default
    :func:`xmodal.tasks.avqa_features.mel_band_widths`: undoes the Slaney area normalisation, so the bands sum
    to the spectrum's power) is the power per band; their sum, divided by the clip's mean, is the segment's
    level (``audio_level``, dB). Sources add up in power, so each segment's bands are fitted as
    ``p_t ~ sum_k a_tk templates_k`` with ``a >= 0``, minimising the generalised Kullback-Leibler divergence
    (the multiplicative updates of non-negative matrix factorisation with the templates fixed, Lee and Seung
    2001: every band counts for its relative error, where least squares follows the few loudest bands):
    ``a_tk`` is class ``k``'s power in segment ``t``, read from the spectrum's shape instead of from the sound
    encoder's evidence, which misses four in five sounding classes in a mixture at 0.5. A class's loudness is its mean
    power over the segments where it sounds (``a_tk`` at least :data:`ON` of its clip maximum), in dB against
    the clip's mean power, clipped at :data:`FLOOR_DB`: what the builder's "louder" compares, each object's
    own stem while it sounds."""
    from xmodal.tasks.avqa_features import mel_band_widths

    if power.ndim != 2 or templates.ndim != 2 or power.shape[1] != templates.shape[1]:
        raise ShapeError(f"expected power (T, M) and templates (K, M), got {power.shape} and {templates.shape}")
    width = mel_band_widths(power.shape[1]) if band_width is None else np.asarray(band_width, np.float64)
    bands = np.exp(power.astype(np.float64)) * width
    level = bands.sum(1)
    scale = max(float(level.mean()), 1e-12)
    bands, level = bands / scale, level / scale
    share = templates.astype(np.float64)  # (K, M)
    activity = np.full((len(bands), len(share)), 1.0 / len(share))  # (T, K); each segment's level is 1 on average
    for _ in range(ITERATIONS):
        ratio = bands / np.maximum(activity @ share, 1e-12)
        activity *= (ratio @ share.T) / np.maximum(share.sum(1), 1e-12)
    peak = activity.max(0)
    sounding = (activity >= ON * peak) & (peak > 0)
    loudness = (activity * sounding).sum(0) / np.maximum(sounding.sum(0), 1)

    def db(v: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.maximum(10 * np.log10(v + 1e-12), FLOOR_DB).astype(np.float32))

    return {"audio_loudness": db(loudness), "audio_level": db(level)}


@functools.cache
def class_templates() -> np.ndarray:
    """``(K, M)``: each of :data:`xmodal.tasks.avqa_features.EVIDENCE_CLASSES`'s share of its power per mel band
    (times the band's width; rows sum to one), averaged over the class's recordings of the *training* pool
    (:func:`xmodal.data.synth.sources.load_source`, the recordings the sound encoder learns from), each the
    mean over frames of its mel power."""
    from xmodal.data.synth import sources, vocabulary
    from xmodal.tasks.avqa_features import EVIDENCE_CLASSES, mel_band_widths, mel_power

    width = mel_band_widths()
    rows = []
    for name in EVIDENCE_CLASSES:
        source = vocabulary.get_class(name).source
        shares = []
        for variant in range(sources.variants(source, "train")):
            p = mel_power(sources.load_source(source, variant, "train")).mean(0) * width
            shares.append(p / p.sum())
        rows.append(np.mean(shares, 0))
    return np.stack(rows)


def named_classes(tokens: Sequence[str], classes: Sequence[str]) -> list[int]:
    """The indices in ``classes`` of the first two tokens that are class names, in order; ``len(classes)``
    (none) fills the rest."""
    found = [classes.index(w) for w in tokens if w in classes][:NAMED]
    return found + [len(classes)] * (NAMED - len(found))


def first_fire(fires: torch.Tensor) -> torch.Tensor:
    """``(B, T, ...)`` values in [0, 1] -> the probability that each segment is the first to fire:
    ``f_t * prod_{s < t} (1 - f_s)``."""
    f = fires.clamp(0, 1)
    before = torch.cumprod(1 - f, dim=1)
    return f * torch.cat([torch.ones_like(before[:, :1]), before[:, :-1]], dim=1)


def _columns(width: int, height: int, device: torch.device) -> torch.Tensor:
    """``(H * W,)``: each cell's horizontal centre, -0.5 at the left edge to 0.5 at the right, row-major."""
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width - 0.5
    return x.repeat(height)


def _centroid(maps: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mass and horizontal centroid of ``(..., N)`` non-negative maps over cells at positions ``x``."""
    mass = maps.sum(-1)
    return mass, (maps * x).sum(-1) / (mass + EPS)


def segment_evidence(named: torch.Tensor, audio_classes: torch.Tensor | None = None,
                     visual_classes: torch.Tensor | None = None, audio_loudness: torch.Tensor | None = None,
                     audio_level: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``{"audio": (B, T, 3), "visual": (B, T, 10), "joint": (B, T, 6)}`` (see the module docstring); a stream
    is present when its inputs are; the audio stream has 8 features when ``audio_loudness`` ``(B, K)`` and
    ``audio_level`` ``(B, T)`` (:func:`clip_loudness`) are given. ``named`` ``(B, 2)`` holds class indices,
    ``K`` for none."""
    k = (audio_classes if audio_classes is not None else visual_classes)
    if k is None:
        return {}
    classes = k.shape[-1]
    chosen = F.one_hot(named.long(), classes + 1)[..., :classes].float()  # (B, 2, K); none is all zero
    out: dict[str, torch.Tensor] = {}
    if audio_classes is not None:
        heard = torch.einsum("btk,bjk->btj", audio_classes, chosen)
        out["audio"] = torch.cat([heard, audio_classes.sum(-1, keepdim=True)], -1)
        if audio_loudness is not None and audio_level is not None:
            t = audio_classes.shape[1]
            loud = torch.einsum("bk,bjk->bj", audio_loudness, chosen)  # none: 0
            clip = torch.cat([loud, loud[:, :1] - loud[:, 1:], audio_classes.amax(1).sum(-1, keepdim=True)], -1)
            out["audio"] = torch.cat([out["audio"], audio_level[..., None], clip[:, None].expand(-1, t, -1)], -1)
    if visual_classes is not None:
        b, t, h, w, _ = visual_classes.shape
        cells = visual_classes.reshape(b, t, h * w, classes)
        x = _columns(w, h, cells.device)
        maps = torch.einsum("btnk,bjk->btjn", cells, chosen)  # (B, T, 2, N)
        mass, centre = _centroid(maps, x)
        peak = maps.amax(-1)
        class_peak = cells.amax(2)  # (B, T, K)
        out["visual"] = torch.cat([mass, peak, centre, first_fire(peak) * centre, cells.sum((2, 3))[..., None],
                                   class_peak.sum(-1, keepdim=True)], -1)
        if audio_classes is not None:
            sounding = (cells * audio_classes[:, :, None]).sum(-1)  # (B, T, N)
            s_mass, s_centre = _centroid(sounding, x)
            on_screen = (audio_classes * class_peak).sum(-1, keepdim=True)
            out["joint"] = torch.cat([heard * peak, on_screen, s_mass[..., None], s_centre[..., None],
                                      first_fire(on_screen) * s_centre[..., None]], -1)
    return out
