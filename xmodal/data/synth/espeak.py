"""Speech from espeak-ng through its C library (libespeak-ng.so.1, Debian package ``espeak-ng``).

One process loads the library once and synthesises many lines: running the ``espeak-ng`` program per line pays
its start-up every time, and splitting one long recording at pauses is fragile. ``AUDIO_OUTPUT_SYNCHRONOUS``
makes ``espeak_Synth`` return only after every sample of the line has reached our callback.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from xmodal.errors import ConfigError, MissingDependencyError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_RATE = 1  # espeak_PARAMETER espeakRATE, words per minute
_ESPEAK_CHARS_UTF8 = 1
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _load_library() -> ctypes.CDLL:
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    raise MissingDependencyError("espeak-ng's library libespeak-ng.so.1 is needed: apt-get install espeak-ng")


class Espeak:
    """An espeak-ng synthesiser in this process: ``speak(text, voice, rate) -> (samples float32, rate_hz)``."""

    def __init__(self) -> None:
        self._lib = _load_library()
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: the C side holds only the pointer
        self.sample_rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0))
        if self.sample_rate <= 0:
            raise MissingDependencyError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice: tuple[str, int] | None = None

    def _collect(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0: go on synthesising

    def set_voice(self, voice: str, rate: int) -> None:
        if self._voice == (voice, rate):
            return
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ConfigError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices=en`)")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        self._voice = (voice, rate)

    def speak(self, text: str, voice: str = "en-us", rate: int = 175) -> tuple[np.ndarray, int]:
        """Synthesise one line; float32 samples in [-1, 1] at ``self.sample_rate`` (22,050 Hz)."""
        self.set_voice(voice, rate)
        self._chunks.clear()
        data = text.encode("utf-8")
        err = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if err != 0 or not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} (error code {err})")
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0, self.sample_rate
