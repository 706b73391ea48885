"""Video with PyAV: RGB frames as uint8 (T, H, W, 3), the frame rate, and the audio track."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xmodal.data.io._common import PathLike, decoding, existing
from xmodal.errors import CorruptFileError, EmptyInputError, MissingModalityError


@dataclass
class VideoClip:
    """A decoded clip. ``frames``: uint8 (T, H, W, 3); ``audio``: float32 (channels, time) or None."""

    frames: np.ndarray
    fps: float
    frame_indices: np.ndarray  # (T,) index of each kept frame in the decoded stream
    duration: float  # seconds of the decoded video stream
    audio: np.ndarray | None = None
    sample_rate: int | None = None


def _decode_audio(container, path) -> tuple[np.ndarray | None, int | None]:
    if not container.streams.audio:
        return None, None
    stream = container.streams.audio[0]
    chunks = []
    for frame in container.decode(stream):
        arr = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
        if not frame.format.is_planar:
            arr = arr.reshape(-1, len(frame.layout.channels)).T
        if np.issubdtype(arr.dtype, np.integer):  # integer PCM tracks: scale to [-1, 1)
            info = np.iinfo(arr.dtype)
            half = float(info.max) + 1.0 if info.min < 0 else (float(info.max) + 1.0) / 2.0
            arr = (arr.astype(np.float64) - (0.0 if info.min < 0 else half)) / half
        chunks.append(arr.astype(np.float32))
    if not chunks:
        return None, None
    audio = np.concatenate(chunks, axis=1)  # (channels, time)
    return audio, int(stream.rate)


def _indices(n: int, rate: float, num_frames: int | None, fps: float | None) -> list[int]:
    """Frames to keep out of ``n``: ``num_frames`` uniformly spaced, or the nearest earlier frame at ``fps``."""
    from xmodal.data.features import uniform_frame_indices

    if num_frames is not None:
        return [int(i) for i in uniform_frame_indices(n, num_frames)]
    if fps is not None and fps != rate:
        times = np.arange(0.0, n / rate, 1.0 / fps)
        return sorted({int(i) for i in np.floor(times * rate + 1e-9) if i < n})
    return list(range(n))


def read_video(path: PathLike, *, num_frames: int | None = None, fps: float | None = None,
               with_audio: bool | None = None, max_frames: int | None = None) -> VideoClip:
    """Decode every frame of the first video stream, then keep ``num_frames`` uniformly spaced ones or
    resample to ``fps`` (nearest earlier frame). A file whose stream stops before the frame count its header
    declares is reported as truncated (CorruptFileError), not returned short.

    ``with_audio``: None decodes the audio track when there is one (``audio`` is None otherwise); True requires
    it (MissingModalityError when the file has none); False skips it."""
    import av

    p = existing(path)
    with decoding(p, "video"):
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise CorruptFileError("no video stream", source=p)
            vstream = container.streams.video[0]
            declared = int(vstream.frames or 0)
            rate = float(vstream.average_rate or vstream.guessed_rate or 25.0)
            # With a declared frame count the kept indices are known up front, so only those frames are
            # converted to RGB and held in memory (a 720p clip is 2.7 MB a frame).
            wanted = set(_indices(declared, rate, num_frames, fps)) if declared and max_frames is None else None
            frames: dict[int, np.ndarray] = {}
            n = 0
            for frame in container.decode(vstream):
                if wanted is None or n in wanted:
                    frames[n] = frame.to_ndarray(format="rgb24")
                n += 1
                if max_frames is not None and n >= max_frames:
                    break
            audio, sr = (None, None)
            if with_audio and not container.streams.audio:
                raise MissingModalityError("with_audio=True, but the file has no audio stream", source=p)
            if with_audio is not False:
                container.seek(0)
                audio, sr = _decode_audio(container, p)
    if n == 0:
        raise EmptyInputError("video stream holds no decodable frames", source=p)
    if max_frames is None and declared and n < declared:
        raise CorruptFileError(f"truncated video: decoded {n} of the {declared} frames the header "
                               "declares", source=p)
    kept = _indices(n, rate, num_frames, fps) if wanted is None else wanted
    idx = np.array(sorted(i for i in kept if i in frames), dtype=np.int64)
    out_rate = fps if (fps is not None and num_frames is None) else rate
    stacked = np.stack([frames[int(i)] for i in idx])  # (T, H, W, 3)
    return VideoClip(stacked, float(out_rate), idx, n / rate, audio, sr)


def write_video(path: PathLike, frames: np.ndarray, fps: float, codec: str = "libx264",
                audio: np.ndarray | None = None, sample_rate: int | None = None,
                video_options: dict[str, str] | None = None, audio_options: dict[str, str] | None = None) -> None:
    """Write uint8 (T, H, W, 3) frames to an mp4 (H.264, yuv420p; odd sizes are cropped to even), optionally
    with a float (channels, time) or (time,) audio track encoded as AAC. ``video_options`` / ``audio_options``
    go to the encoders (e.g. ``{"preset": "veryfast"}``, ``{"aac_coder": "fast"}``)."""
    from fractions import Fraction

    import av

    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w = frames.shape[:3]
    h2, w2 = h - h % 2, w - w % 2  # yuv420p needs even sizes
    with av.open(str(path), "w") as container:
        vstream: Any = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vstream.width, vstream.height, vstream.pix_fmt = w2, h2, "yuv420p"
        if video_options:
            vstream.options = dict(video_options)
        astream: Any = None
        if audio is not None:
            if sample_rate is None:
                raise ValueError("write_video: sample_rate is required with audio")
            audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))  # (channels, time)
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            astream = container.add_stream("aac", rate=int(sample_rate), layout=layout)
            if audio_options:
                astream.options = dict(audio_options)
        for i in range(t):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i, :h2, :w2]), format="rgb24")
            container.mux(vstream.encode(vf))
        container.mux(vstream.encode())
        if astream is not None:
            assert audio is not None and sample_rate is not None
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp",
                                            layout="mono" if audio.shape[0] == 1 else "stereo")
            af.sample_rate = int(sample_rate)
            af.pts = 0
            container.mux(astream.encode(af))
            container.mux(astream.encode())
