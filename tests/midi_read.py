"""Reading MIDI files back with mido, independently of pretty_midi (which xmodal writes them with)."""

from __future__ import annotations

from pathlib import Path

import pytest


def mido_notes(path: Path) -> list[tuple[float, float, int, int, int]]:
    """(start s, end s, pitch, velocity, program) of every note, sorted, read with mido (tempo changes applied:
    iterating a ``MidiFile`` yields message times in seconds)."""
    mido = pytest.importorskip("mido")
    now, program, open_notes, notes = 0.0, {}, {}, []
    for msg in mido.MidiFile(str(path)):
        now += msg.time
        if msg.type == "program_change":
            program[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            open_notes[(msg.channel, msg.note)] = (now, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            start, vel = open_notes.pop((msg.channel, msg.note))
            notes.append((start, now, msg.note, vel, program.get(msg.channel, 0)))
    return sorted(notes)
