"""The files a generative task's ``generate`` writes: PNG images, 16-bit PCM WAV, MIDI, MP4 and token files.

Each writer checks its input before writing anything and raises a typed error naming the field at fault
(:class:`~xmodal.errors.ShapeError` for a wrong shape or dtype, :class:`~xmodal.errors.NonFiniteError` for NaN or
infinity, :class:`~xmodal.errors.SampleRateError` for a bad rate, :class:`~xmodal.errors.DataError` for values
out of range), so a model that emits NaN is reported as such, not as a black image or a silent file. Nothing is
clipped or cropped silently. Every writer returns the path it wrote and writes the same bytes for the same input
(no time stamps, no version strings in PNG; MIDI and WAV carry none).

Formats:

- PNG (``write_png``): 8-bit grey ``(H, W)``, RGB ``(H, W, 3)`` or RGBA ``(H, W, 4)``; uint8 as is, floats in
  [0, 1] as ``round(255 x)``; ``scale`` repeats every pixel ``scale`` times along both axes (nearest
  neighbour, so 8x8 digits can be seen).
- WAV (``write_wav``): 16-bit PCM, ``(time,)`` mono or ``(channels, time)``, floats in [-1, 1] stored as
  ``round(32767 x)`` (so a sample reads back within 1/32767, and -1, 0, 1 exactly).
- MIDI (``write_midi``): notes ``(N, 5)`` (start s, end s, pitch, velocity, program; 128 = drums, the layout of
  :mod:`xmodal.data.io.midi`), or a piano roll ``(128, T)`` at ``fs`` frames per second, through pretty_midi
  (times are stored in ticks: 220 per beat, 1/440 s at the default 120 bpm).
- MP4 (``write_mp4``): H.264 (libx264, yuv420p) frames ``(T, H, W, 3)`` or grey ``(T, H, W)``, uint8 or floats
  in [0, 1], even H and W, through :func:`xmodal.data.io.video.write_video`; lossy: the codec's tolerance is
  stated by the test (``tests/test_generative_writers.py``).
- Tokens (``write_tokens``): a NumPy ``.npy`` file (format 1.0, no pickle) holding int64 ``(samples, length)``
  (or any shape the caller gives), values in ``0 .. vocab_size - 1``; read it with
  ``numpy.load(path, allow_pickle=False)``.
"""

from __future__ import annotations

from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmodal.errors import DataError, NonFiniteError, SampleRateError, ShapeError

PathLike = str | Path
PCM16 = 32767  # full scale of 16-bit PCM: x in [-1, 1] is stored as round(32767 x)


def _array(value: Any, field: str) -> np.ndarray:
    """A numpy view of an array or tensor (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value.float() if value.dtype in (torch.bfloat16, torch.float16) else value).numpy()
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ShapeError(f"expected a numeric array, got dtype {arr.dtype}", source=field)
    return arr


def _finite(arr: np.ndarray, field: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise NonFiniteError(f"{bad} of {arr.size} values are NaN or infinite", source=field)


def _in_range(arr: np.ndarray, low: float, high: float, field: str) -> None:
    if arr.size and (arr.min() < low or arr.max() > high):
        raise DataError(f"values must lie in [{low:g}, {high:g}], got [{arr.min():g}, {arr.max():g}]",
                        source=field)


def _pixels(value: Any, field: str) -> np.ndarray:
    """uint8 pixels of a uint8 array, or of floats in [0, 1] (``round(255 x)``)."""
    arr = _array(value, field)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind != "f":
        raise ShapeError(f"expected uint8 or floats in [0, 1], got dtype {arr.dtype}", source=field)
    _finite(arr, field)
    _in_range(arr, 0.0, 1.0, field)
    return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)


def _destination(path: PathLike, suffix: str) -> Path:
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise DataError(f"expected a {suffix} file name", source=p)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def write_png(image: Any, path: PathLike, scale: int = 1) -> Path:
    """Write ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` pixels (uint8, or floats in [0, 1]) as a PNG, each pixel
    repeated ``scale`` times along both axes."""
    from PIL import Image

    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise DataError(f"must be an integer >= 1, got {scale!r}", source="scale")
    pixels = _pixels(image, "image")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))) or 0 in pixels.shape:
        raise ShapeError(f"expected (H, W), (H, W, 3) or (H, W, 4), got {pixels.shape}", source="image")
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    p = _destination(path, ".png")
    Image.fromarray(np.ascontiguousarray(pixels)).save(p, format="PNG")  # PIL writes no time or version chunk
    return p


def write_wav(waveform: Any, sample_rate: int, path: PathLike) -> Path:
    """Write float ``(time,)`` or ``(channels, time)`` audio in [-1, 1] as 16-bit PCM WAV at ``sample_rate``."""
    import wave

    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or not 1 <= sample_rate <= 768_000:
        raise SampleRateError(f"must be an integer number of Hz in 1..768000, got {sample_rate!r}",
                              source="sample_rate")
    arr = _array(waveform, "waveform")
    if arr.dtype.kind != "f":
        raise ShapeError(f"expected floats in [-1, 1], got dtype {arr.dtype}", source="waveform")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] == 0 or not 1 <= arr.shape[0] <= 16:
        raise ShapeError(f"expected (time,) or (channels <= 16, time) with time >= 1, got {np.shape(waveform)}",
                         source="waveform")
    _finite(arr, "waveform")
    _in_range(arr, -1.0, 1.0, "waveform")
    pcm = np.rint(arr.astype(np.float64) * PCM16).astype("<i2")  # (channels, time)
    p = _destination(path, ".wav")
    with wave.open(str(p), "wb") as fh:
        fh.setnchannels(pcm.shape[0])
        fh.setsampwidth(2)
        fh.setframerate(int(sample_rate))
        fh.writeframes(np.ascontiguousarray(pcm.T).tobytes())  # frames interleave the channels
    return p


def roll_to_notes(roll: Any, fs: float, program: int = 0) -> np.ndarray:
    """``(N, 5)`` notes of a ``(128, T)`` piano roll at ``fs`` frames/s: every run of equal non-zero frames of a
    pitch is one note, its value the velocity (a roll of only 0 and 1 plays at velocity 100)."""
    arr = _array(roll, "piano_roll")
    if arr.ndim != 2 or arr.shape[0] != 128:
        raise ShapeError(f"expected (128, frames), got {arr.shape}", source="piano_roll")
    _finite(arr, "piano_roll")
    _in_range(arr, 0, 127, "piano_roll")
    if not isinstance(fs, Real) or not np.isfinite(float(fs)) or fs <= 0:
        raise SampleRateError(f"must be a positive number of frames per second, got {fs!r}", source="fs")
    if np.isin(arr, (0, 1)).all():
        velocity = arr.astype(np.int64) * 100
    elif (arr == np.rint(arr)).all():
        velocity = arr.astype(np.int64)
    else:  # probabilities or fractional velocities: the threshold is the caller's choice, not ours
        raise DataError("expected velocities (integers 0..127) or a 0/1 roll; threshold a roll of probabilities "
                        "first", source="piano_roll")
    padded = np.pad(velocity, ((0, 0), (1, 1)))
    rows = []
    for pitch in range(128):
        change = np.nonzero(np.diff(padded[pitch]))[0]  # frame indices where the value changes
        for start, end in zip(change[:-1], change[1:], strict=True):
            v = padded[pitch, start + 1]
            if v > 0:
                rows.append((start / fs, end / fs, pitch, v, program))
    notes = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def _check_notes(value: Any) -> np.ndarray:
    notes = _array(value, "notes").astype(np.float64)
    if notes.ndim != 2 or notes.shape[1] != 5:
        raise ShapeError(f"expected (N, 5) notes (start, end, pitch, velocity, program), got {notes.shape}",
                         source="notes")
    _finite(notes, "notes")
    checks = [(notes[:, 0] < 0, "start must be >= 0"), (notes[:, 1] <= notes[:, 0], "end must be after start"),
              (notes[:, 2:] != np.rint(notes[:, 2:]), "pitch, velocity and program must be integers"),
              ((notes[:, 2] < 0) | (notes[:, 2] > 127), "pitch must lie in 0..127"),
              ((notes[:, 3] < 1) | (notes[:, 3] > 127), "velocity must lie in 1..127"),
              ((notes[:, 4] < 0) | (notes[:, 4] > 128), "program must lie in 0..128 (128: drums)")]
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{message}; row {i} is {notes[i].tolist()}", source="notes")
    return notes


def write_midi(music: Any, path: PathLike, *, fs: float | None = None, program: int = 0,
               tempo: float = 120.0) -> Path:
    """Write notes ``(N, 5)`` or, with ``fs``, a piano roll ``(128, T)`` (played with ``program``) as MIDI."""
    from xmodal.data.io.midi import write_midi as write_notes

    if not isinstance(tempo, Real) or not np.isfinite(float(tempo)) or tempo <= 0:
        raise DataError(f"must be a positive number of beats per minute, got {tempo!r}", source="tempo")
    notes = _check_notes(music if fs is None else roll_to_notes(music, fs, program))
    p = _destination(path, ".mid")
    write_notes(p, notes, tempo=tempo)
    return p


def write_mp4(frames: Any, fps: float, path: PathLike, *, audio: Any = None, sample_rate: int | None = None) -> Path:
    """Write ``(T, H, W, 3)`` or grey ``(T, H, W)`` frames (uint8, or floats in [0, 1]) at ``fps`` as an H.264 MP4,
    optionally with a float audio track in [-1, 1] (``(time,)`` or ``(channels, time)``, AAC)."""
    from xmodal.data.io.video import write_video

    pixels = _pixels(frames, "frames")
    if pixels.ndim == 3:
        pixels = np.repeat(pixels[..., None], 3, axis=3)
    if pixels.ndim != 4 or pixels.shape[3] != 3 or 0 in pixels.shape:
        raise ShapeError(f"expected (T, H, W, 3) or (T, H, W), got {np.shape(frames)}", source="frames")
    if pixels.shape[1] % 2 or pixels.shape[2] % 2:
        raise ShapeError(f"H and W must be even for yuv420p, got {pixels.shape[1]} x {pixels.shape[2]}",
                         source="frames")
    if not isinstance(fps, Real) or not np.isfinite(float(fps)) or not 0 < fps <= 240:
        raise DataError(f"must be a number of frames per second in (0, 240], got {fps!r}", source="fps")
    track = None
    if audio is not None:
        if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 96000:
            raise SampleRateError(f"an audio track needs an integer rate in 8000..96000 Hz, got {sample_rate!r}",
                                  source="sample_rate")
        track = _array(audio, "audio").astype(np.float32)
        if track.ndim not in (1, 2) or track.shape[-1] == 0 or (track.ndim == 2 and track.shape[0] > 2):
            raise ShapeError(f"expected (time,) or (channels <= 2, time), got {track.shape}", source="audio")
        _finite(track, "audio")
        _in_range(track, -1.0, 1.0, "audio")
    p = _destination(path, ".mp4")
    # one encoder thread: x264's output then depends on nothing but the frames and these options
    write_video(p, pixels, float(fps), audio=track, sample_rate=sample_rate,
                video_options={"threads": "1", "preset": "medium", "crf": "12"})
    return p


def write_tokens(tokens: Any, path: PathLike, vocab_size: int | None = None) -> Path:
    """Write integer tokens (any shape, usually ``(samples, length)``) as an int64 ``.npy`` file; with
    ``vocab_size`` every token must lie in ``0 .. vocab_size - 1``."""
    arr = _array(tokens, "tokens")
    if arr.dtype.kind not in "iu":
        raise ShapeError(f"expected integer tokens, got dtype {arr.dtype}", source="tokens")
    if arr.size == 0:
        raise ShapeError(f"holds no tokens (shape {arr.shape})", source="tokens")
    high = None if vocab_size is None else vocab_size - 1
    if arr.min() < 0 or (high is not None and arr.max() > high):
        raise DataError(f"tokens must lie in 0..{high if high is not None else 'vocab_size - 1'}, got "
                        f"[{arr.min()}, {arr.max()}]", source="tokens")
    p = _destination(path, ".npy")
    with open(p, "wb") as fh:
        np.save(fh, arr.astype(np.int64), allow_pickle=False)
    return p


__all__ = ["PCM16", "roll_to_notes", "write_midi", "write_mp4", "write_png", "write_tokens", "write_wav"]
