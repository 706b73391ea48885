"""MIDI with pretty_midi: note arrays (start, end, pitch, velocity, program) and piano rolls."""

from __future__ import annotations

import numpy as np

from xmodal.data.io._common import PathLike, decoding, existing
from xmodal.errors import EmptyInputError, require_module

NOTE_FIELDS = ("start", "end", "pitch", "velocity", "program")
DRUM_PROGRAM = 128  # drums get program 128 so they stay apart from melodic program 0 (piano)


def _load(path: PathLike):
    pretty_midi = require_module("pretty_midi", extra="music")
    p = existing(path)
    with decoding(p, "MIDI"):
        return p, pretty_midi.PrettyMIDI(str(p))


def notes_from_pretty_midi(pm) -> np.ndarray:
    """float32 (N, 5) notes of every instrument, sorted by start, pitch, velocity, program, end."""
    rows = [(n.start, n.end, n.pitch, n.velocity, DRUM_PROGRAM if inst.is_drum else inst.program)
            for inst in pm.instruments for n in inst.notes]
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 5)
    return arr[np.lexsort((arr[:, 1], arr[:, 4], arr[:, 3], arr[:, 2], arr[:, 0]))]


def read_midi_notes(path: PathLike) -> np.ndarray:
    """Notes as float32 ``(N, 5)``: start and end in seconds, pitch, velocity, program (128 = drums).
    A file with no notes raises :class:`EmptyInputError` naming it."""
    p, pm = _load(path)
    notes = notes_from_pretty_midi(pm)
    if len(notes) == 0:
        raise EmptyInputError("MIDI file holds no notes", source=p)
    return notes


def read_piano_roll(path: PathLike, fs: float = 100.0, binary: bool = False) -> np.ndarray:
    """float32 ``(128, T)`` piano roll sampled at ``fs`` frames/s (velocities, or 0/1 when ``binary``),
    following pretty_midi's ``get_piano_roll`` (drums excluded)."""
    p, pm = _load(path)
    if not any(inst.notes for inst in pm.instruments):
        raise EmptyInputError("MIDI file holds no notes", source=p)
    roll = pm.get_piano_roll(fs=fs).astype(np.float32)
    return (roll > 0).astype(np.float32) if binary else roll


def write_midi(path: PathLike, notes: np.ndarray, tempo: float = 120.0) -> None:
    """Write ``(N, 5)`` notes (start, end, pitch, velocity, program; 128 = drums), one track per program."""
    pretty_midi = require_module("pretty_midi", extra="music")
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    notes = np.asarray(notes, dtype=np.float64).reshape(-1, 5)
    for program in np.unique(notes[:, 4]).astype(int):
        drum = program == DRUM_PROGRAM
        inst = pretty_midi.Instrument(program=0 if drum else int(program), is_drum=bool(drum))
        for start, end, pitch, vel, _ in notes[notes[:, 4] == program]:
            inst.notes.append(pretty_midi.Note(velocity=int(vel), pitch=int(pitch), start=float(start),
                                               end=float(end)))
        pm.instruments.append(inst)
    pm.write(str(path))
