"""Symbolic music metrics of Wu and Yang's MusDr (Jazz Transformer, ISMIR 2020): pitch-class entropy H,
grooving pattern similarity GS and chord progression irregularity CPI.

Reference: slSeanWU/MusDr ``musdr/eval_metrics.py`` and ``musdr/side_utils.py``. The metrics read REMI event
IDs in the Jazz Transformer's vocabulary: ``Bar`` = 192, ``Position`` = 193..256 (64 per bar), ``Note-On`` =
0..127 (the pitch), ``Chord-Tone`` (root) = 322..333, ``Chord-Slash`` (bass) = 334..345, ``Chord-Type`` =
346..392. Every function takes such an event list (so MusDr's own CSV pieces can be scored) or a MIDI file /
``pretty_midi.PrettyMIDI``, converted by :func:`midi_to_events`:

MIDI to bar/position events (documented choices; MusDr itself starts from REMI data):

- Time is read in MIDI ticks, so tempo changes do not move notes. A grid step is a 64th note:
  ``step = round(tick * 16 / ticks_per_quarter)`` (16 positions per quarter note, MusDr's 64 per 4/4 bar).
- Bars follow the time signatures (``numerator * 64 / denominator`` steps; 4/4 when the file has none). A
  change of time signature starts a new bar. Bars longer than 64 steps (5/4, 12/8, ...) are divided into 64
  equal positions, since the vocabulary has 64 Position events.
- Every bar from the first to the one holding the last onset is emitted, empty ones included; a note's bar is
  the bar holding its quantised onset. Drum tracks are left out (their pitches are not pitch classes).
- Inside a bar: ``Bar``, then for each position with an onset or a chord change, ``Position`` then the chord
  tokens (Tone, Type, Slash) then one ``Note-On`` per note, in ascending pitch. Velocity and duration tokens
  are not emitted; none of these metrics reads them.
- Chords (for CPI) are recognised per half bar (32 steps) by template matching of the duration-weighted
  pitch-class profile (see :data:`CHORD_QUALITIES`); the bass is the lowest pitch sounding in the window. A
  chord is emitted only when it changes, as a lead sheet lists them. Half bars with no sounding note keep the
  previous chord.
"""

from __future__ import annotations

import itertools
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from xmodal.data.io._common import decoding
from xmodal.errors import (
    EmptyInputError,
    MetricInputError,
    MissingFileError,
    require_module,
)

BAR = 192
POSITION0 = 193
N_POSITIONS = 64
PITCHES = range(128)
CHORD_TONE0, CHORD_SLASH0, CHORD_TYPE0 = 322, 334, 346
CHORD_TONE = range(CHORD_TONE0, CHORD_TONE0 + 12)
CHORD_SLASH = range(CHORD_SLASH0, CHORD_SLASH0 + 12)
CHORD_TYPE = range(CHORD_TYPE0, 393)
STEPS_PER_QUARTER = 16
CHORD_WINDOW = 32  # steps: half a 4/4 bar

# Chord qualities (interval sets from the root); Chord-Type id = CHORD_TYPE0 + index. Earlier entries win ties.
CHORD_QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "7": (0, 4, 7, 10),
    "maj7": (0, 4, 7, 11),
    "m7": (0, 3, 7, 10),
    "dim": (0, 3, 6),
    "m7b5": (0, 3, 6, 10),
    "dim7": (0, 3, 6, 9),
    "aug": (0, 4, 8),
    "sus4": (0, 5, 7),
    "sus2": (0, 2, 7),
    "6": (0, 4, 7, 9),
    "m6": (0, 3, 7, 9),
    "mmaj7": (0, 3, 7, 11),
}

Piece = Union[Sequence[int], str, Path, Any]  # events, a MIDI path, or a pretty_midi.PrettyMIDI


# --------------------------------------------------------------------------- MIDI -> events
def _load_midi(piece: Any):
    pretty_midi = require_module("pretty_midi", extra="music")
    if isinstance(piece, (str, Path)):
        if not Path(piece).is_file():
            raise MissingFileError("MIDI file not found", piece)
        with decoding(piece, "MIDI"):  # pretty_midi/mido raise many types on bad files
            return pretty_midi.PrettyMIDI(str(piece)), str(piece)
    return piece, "PrettyMIDI"


def _bar_starts(pm, last_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Start step and length (in steps) of every bar up to the one holding ``last_step``."""
    res = pm.resolution
    changes = [
        (int(round(pm.time_to_tick(ts.time) * STEPS_PER_QUARTER / res)), ts.numerator, ts.denominator)
        for ts in pm.time_signature_changes
    ]
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    starts, lengths = [], []
    for i, (step, num, den) in enumerate(changes):
        bar_len = max(int(round(num * 4 * STEPS_PER_QUARTER / den)), 1)
        stop = changes[i + 1][0] if i + 1 < len(changes) else None
        pos = step
        while (stop is None and pos <= last_step) or (stop is not None and pos < stop):
            starts.append(pos)
            lengths.append(bar_len)
            pos += bar_len
        if stop is None:
            break
    return np.asarray(starts, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def _recognise_chords(notes: np.ndarray, total: int, window: int) -> list[tuple[int, tuple[int, int, int]]]:
    """(step, (root, quality, bass)) at each chord change; ``notes`` rows are (onset, offset, pitch) steps."""
    templates = []
    for qi, intervals in enumerate(CHORD_QUALITIES.values()):
        for root in range(12):
            t = np.full(12, -1.0)
            t[[(root + i) % 12 for i in intervals]] = 1.0
            templates.append((root, qi, t))
    tmat = np.stack([t for _, _, t in templates])  # (qualities * 12, 12)
    out: list[tuple[int, tuple[int, int, int]]] = []
    prev = None
    for w0 in range(0, total, window):
        w1 = w0 + window
        overlap = np.minimum(notes[:, 1], w1) - np.maximum(notes[:, 0], w0)
        on = overlap > 0
        if not on.any():
            continue
        profile = np.bincount(notes[on, 2] % 12, weights=overlap[on], minlength=12)
        best = int(np.argmax(tmat @ profile))  # first maximum: root C first, then earlier qualities
        bass = int(notes[on, 2].min()) % 12
        chord = (templates[best][0], templates[best][1], bass)
        if chord != prev:
            out.append((w0, chord))
            prev = chord
    return out


def midi_to_events(piece: Any, *, chords: bool = True, chord_window: int = CHORD_WINDOW) -> list[int]:
    """REMI-like events (MusDr ids) of a MIDI file or ``PrettyMIDI``; the conversion is in the module doc.

    Raises :class:`EmptyInputError` when no pitched note is found.
    """
    pm, name = _load_midi(piece)
    res = pm.resolution
    rows = []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for note in inst.notes:
            on = int(round(pm.time_to_tick(note.start) * STEPS_PER_QUARTER / res))
            off = max(int(round(pm.time_to_tick(note.end) * STEPS_PER_QUARTER / res)), on + 1)
            rows.append((on, off, note.pitch))
    if not rows:
        raise EmptyInputError("MIDI holds no pitched notes (drums are left out)", source=name)
    notes = np.asarray(rows, dtype=np.int64)
    notes = notes[np.lexsort((notes[:, 2], notes[:, 0]))]
    starts, lengths = _bar_starts(pm, int(notes[:, 0].max()))
    bar_of = np.searchsorted(starts, notes[:, 0], side="right") - 1
    chord_at: dict[tuple[int, int], tuple[int, int, int]] = {}
    if chords:
        for step, chord in _recognise_chords(notes, int(notes[:, 1].max()), chord_window):
            b = int(np.searchsorted(starts, step, side="right") - 1)
            if b < len(starts):
                chord_at[(b, _position(step - starts[b], lengths[b]))] = chord
    events: list[int] = []
    for b in range(len(starts)):
        in_bar = notes[bar_of == b]
        positions = {_position(int(s) - int(starts[b]), int(lengths[b])) for s in in_bar[:, 0]}
        positions |= {p for (bb, p) in chord_at if bb == b}
        events.append(BAR)
        for p in sorted(positions):
            events.append(POSITION0 + p)
            if (b, p) in chord_at:
                root, quality, bass = chord_at[(b, p)]
                events += [CHORD_TONE0 + root, CHORD_TYPE0 + quality, CHORD_SLASH0 + bass]
            here = in_bar[[_position(int(s) - int(starts[b]), int(lengths[b])) == p for s in in_bar[:, 0]]]
            events += [int(x) for x in sorted(here[:, 2])]
    return events


def _position(offset: int, bar_len: int) -> int:
    if bar_len <= N_POSITIONS:
        return int(offset)
    return int(offset * N_POSITIONS // bar_len)


def to_events(piece: Piece) -> list[int]:
    """Event list of ``piece``: returned as is when it already is one, else converted from MIDI."""
    if isinstance(piece, (str, Path)) or hasattr(piece, "instruments"):
        return midi_to_events(piece)
    events = [int(x) for x in piece]
    if not events:
        raise EmptyInputError("event sequence is empty")
    return events


# --------------------------------------------------------------------------- helpers (MusDr side_utils)
def _bar_crop(events: list[int], markers: np.ndarray, first: int, last: int) -> list[int]:
    """Bars ``first..last`` inclusive (to the end of the piece when ``last`` is the final bar)."""
    stop = markers[last + 1] if last < len(markers) - 1 else len(events)
    return events[markers[first] : stop]


def _strip_trailing_bar(events: list[int]) -> list[int]:
    return events[:-1] if events and events[-1] == BAR else events


# --------------------------------------------------------------------------- metrics
def pitch_class_entropy(piece: Piece, window_bars: int = 1) -> float:
    """MusDr ``H``: mean over ``window_bars``-bar windows (hop one bar) of the pitch-class histogram entropy
    in bits; windows without notes are skipped. MusDr reports H1 and H4."""
    from scipy.stats import entropy

    events = _strip_trailing_bar(to_events(piece))
    markers = np.flatnonzero(np.asarray(events) == BAR)
    n_bars = len(markers)
    if n_bars == 0:
        raise EmptyInputError("piece has no Bar events")
    if window_bars < 1:
        raise MetricInputError(f"window_bars must be >= 1, got {window_bars}")
    if window_bars > n_bars:
        warnings.warn(
            f"window of {window_bars} bars is longer than the piece ({n_bars} bars); using {n_bars}",
            stacklevel=2,
        )
        window_bars = n_bars
    ents = []
    for first in range(n_bars - window_bars + 1):
        crop = _bar_crop(events, markers, first, first + window_bars - 1)
        pcs = np.asarray([e for e in crop if e in PITCHES]) % 12
        if pcs.size == 0:
            continue
        hist = np.bincount(pcs, minlength=12) / pcs.size
        ents.append(entropy(hist) / np.log(2))
    if not ents:
        raise EmptyInputError("piece has no Note-On events")
    return float(np.mean(ents))


def _onset_vector(bar: list[int]) -> np.ndarray:
    vec = np.zeros(N_POSITIONS)
    pos = -1  # as MusDr: a note before any Position lands on the last position
    for ev in bar:
        if POSITION0 <= ev < POSITION0 + N_POSITIONS:
            pos = ev - POSITION0
        if ev in PITCHES:
            vec[pos] = 1
    return vec


def grooving_similarity(piece: Piece, max_pairs: int = 1000, seed: int | None = 0) -> float:
    """MusDr ``GS``: mean over bar pairs of 1 - XOR(onset vectors) / 64.

    All pairs are used when there are at most ``max_pairs``; otherwise ``max_pairs`` pairs drawn as
    ``random.Random(seed).sample`` (MusDr draws them unseeded; ``seed=None`` does the same).
    """
    events = _strip_trailing_bar(to_events(piece))
    markers = np.flatnonzero(np.asarray(events) == BAR)
    if len(markers) < 2:
        raise MetricInputError(f"grooving similarity needs at least two bars, got {len(markers)}")
    if not any(e in PITCHES for e in events):
        raise EmptyInputError("piece has no Note-On events")
    onsets = np.stack([_onset_vector(_bar_crop(events, markers, b, b)) for b in range(len(markers))])
    pairs = list(itertools.combinations(range(len(markers)), 2))
    if len(pairs) > max_pairs:
        pairs = random.Random(seed).sample(pairs, max_pairs)
    i, j = np.asarray(pairs).T
    sims = 1.0 - np.sum(np.abs(onsets[i] - onsets[j]), axis=1) / N_POSITIONS
    return float(np.mean(sims))


def chord_sequence(events: Sequence[int]) -> list[tuple[int, int, int]]:
    """Chords as MusDr's ``get_chord_sequence`` reads them: a triple counts only when its third chord token
    is a Slash and is the third token since the last accepted triple (MusDr's grammar check, kept as is)."""
    chord_ids = set(CHORD_TONE) | set(CHORD_SLASH) | set(CHORD_TYPE)
    toks = [e for e in events if e in chord_ids]
    out, count = [], 0
    for i, ev in enumerate(toks):
        count += 1
        if ev in CHORD_SLASH and count == 3:
            count = 0
            out.append((toks[i - 2], toks[i - 1], toks[i]))
    return out


def chord_irregularity(piece: Piece, ngram: int = 3) -> float:
    """MusDr ``CPI``: #unique chord n-grams / (#chords - n). As in MusDr, the n-grams counted start at
    0 .. #chords - n - 1 (the last one is left out), and a piece with at most n chords scores 1."""
    chords = chord_sequence(to_events(piece))
    if len(chords) <= ngram:
        return 1.0
    count = len(chords) - ngram
    return len({tuple(chords[i : i + ngram]) for i in range(count)}) / count
