"""MIDI: a piano roll (128, frames), or note events (notes, 5) with times relative to the first onset."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.transforms.base import Transform, register_transform


@register_transform("piano_roll", modalities=("piano_roll",))
class PianoRollTransform(Transform):
    """Path -> float32 ``(128, frames)`` at ``fs`` frames/s (pretty_midi's get_piano_roll), velocities / 127
    or 0/1 with ``binary``, at most ``max_frames`` long; an .npz/.npy roll is returned as stored."""

    defaults: ClassVar[dict[str, Any]] = {"fs": 20.0, "binary": False, "max_frames": None}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        from pathlib import Path

        from xmodal.data.io import read_piano_roll

        if Path(value).suffix.lower() in (".npz", ".npy"):  # a stored roll is used as it is
            from xmodal.transforms.motion import read_npz_array

            roll = read_npz_array(value, ("roll", "piano_roll", "pianoroll")).astype(np.float32)
        else:
            roll = read_piano_roll(value, fs=self.params["fs"], binary=self.params["binary"])
            if not self.params["binary"]:
                roll = roll / 127.0
        if self.params["max_frames"] is not None:
            roll = roll[:, : self.params["max_frames"]]
        return torch.from_numpy(np.ascontiguousarray(roll, dtype=np.float32))


@register_transform("midi_notes", modalities=("midi_notes",))
class NoteTokensTransform(Transform):
    """Path -> float32 ``(notes, 5)``: start and end in seconds from the first onset, pitch, velocity,
    program (128 = drums), sorted by onset; the first ``max_notes``."""

    defaults: ClassVar[dict[str, Any]] = {"max_notes": 512}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        from xmodal.data.io import read_midi_notes

        notes = read_midi_notes(value)[: self.params["max_notes"]].copy()
        notes[:, :2] -= notes[:, 0].min()
        return torch.from_numpy(notes)
