"""The sample writers of ``xmodal.generative.writers``, each read back by an independent reader: PIL for PNG,
scipy.io.wavfile (and soundfile) for WAV, mido for MIDI (the writer goes through pretty_midi), PyAV's decoder
opened directly (not xmodal's reader) for MP4, numpy for tokens. The content is real: skimage's photographs,
ALSA's spoken channel names, the soprano line of a Bach chorale from the music21 corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from midi_read import mido_notes

from xmodal.errors import DataError, NonFiniteError, SampleRateError, ShapeError
from xmodal.generative.writers import (
    PCM16,
    roll_to_notes,
    write_midi,
    write_mp4,
    write_png,
    write_tokens,
    write_wav,
)

ALSA = Path("/usr/share/sounds/alsa")


def _camera() -> np.ndarray:
    return pytest.importorskip("skimage.data").camera()[::8, ::8]  # (64, 64) uint8, real photograph


def _astronaut() -> np.ndarray:
    return pytest.importorskip("skimage.data").astronaut()[::16, ::16]  # (32, 32, 3) uint8


def _speech() -> tuple[np.ndarray, int]:
    sf = pytest.importorskip("soundfile")
    path = ALSA / "Front_Center.wav"
    if not path.is_file():
        pytest.skip(f"needs {path} (Debian alsa-utils)")
    audio, rate = sf.read(path, dtype="float64", always_2d=True)
    return audio[:, 0], int(rate)


def _chorale_notes() -> np.ndarray:
    """(N, 5) notes of the first 20 notes of a chorale's soprano line at 120 bpm (a quarter note is 0.5 s)."""
    corpus = pytest.importorskip("music21.corpus")
    score = corpus.parse("bach/bwv269")
    rows = [(float(n.offset) * 0.5, float(n.offset + n.quarterLength) * 0.5, n.pitch.midi, 90, 73)
            for n in score.parts[0].flatten().notes if hasattr(n, "pitch")][:20]
    return np.asarray(rows, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------- PNG
def test_png_reads_back_exactly(tmp_path: Path) -> None:
    from PIL import Image

    grey, rgb = _camera(), _astronaut()
    with Image.open(write_png(grey, tmp_path / "g.png")) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), grey)
    with Image.open(write_png(rgb, tmp_path / "c.png", scale=3)) as im:
        assert im.mode == "RGB" and im.size == (96, 96)
        back = np.asarray(im)
    assert np.array_equal(back[::3, ::3], rgb) and np.array_equal(back[2::3, 1::3], rgb)  # nearest neighbour
    floats = torch.from_numpy(grey).double() / 255.0  # a float tensor in [0, 1]: round(255 x) is the pixel
    with Image.open(write_png(floats, tmp_path / "f.png")) as im:
        assert np.array_equal(np.asarray(im), grey)
    assert write_png(grey, tmp_path / "g2.png").read_bytes() == (tmp_path / "g.png").read_bytes()


# ----------------------------------------------------------------------------------------------------- WAV
def test_wav_is_16_bit_pcm_within_one_step(tmp_path: Path) -> None:
    from scipy.io import wavfile

    speech, rate = _speech()
    path = write_wav(speech, rate, tmp_path / "s.wav")
    back_rate, pcm = wavfile.read(path)
    assert back_rate == rate and pcm.dtype == np.int16 and pcm.shape == speech.shape
    assert np.max(np.abs(pcm / PCM16 - speech)) <= 0.5 / PCM16 + 1e-12  # round(32767 x): half a step
    stereo = np.stack([speech, -speech])
    _, pcm2 = wavfile.read(write_wav(torch.from_numpy(stereo).float(), 8000, tmp_path / "st.wav"))
    assert pcm2.shape == (len(speech), 2) and np.max(np.abs(pcm2.T / PCM16 - stereo)) <= 1 / PCM16
    edges = np.array([-1.0, 0.0, 1.0, 0.5])
    _, exact = wavfile.read(write_wav(edges, 16000, tmp_path / "e.wav"))
    assert exact.tolist() == [-32767, 0, 32767, 16384]  # 0.5 * 32767 = 16383.5 rounds to even
    sf = pytest.importorskip("soundfile")
    info = sf.info(str(path))
    assert info.subtype == "PCM_16" and info.samplerate == rate and info.frames == len(speech)


# ---------------------------------------------------------------------------------------------------- MIDI
def test_midi_notes_read_back_with_mido(tmp_path: Path) -> None:
    notes = _chorale_notes()
    back = np.asarray(mido_notes(write_midi(notes, tmp_path / "m.mid")))
    assert back.shape == notes.shape
    assert np.array_equal(back[:, 2:], notes[:, 2:])  # pitch, velocity, program (73: flute) exactly
    tick = 0.5 / 220  # pretty_midi writes 220 ticks per beat; at 120 bpm a tick is 1/440 s
    assert np.max(np.abs(back[:, :2] - notes[:, :2])) <= tick


def test_piano_roll_to_midi_round_trip(tmp_path: Path) -> None:
    pretty_midi = pytest.importorskip("pretty_midi")
    notes = _chorale_notes()
    notes[:, 1] -= 0.05  # a gap between repeated pitches, so the roll keeps them apart
    first = write_midi(notes, tmp_path / "n.mid")
    roll = pretty_midi.PrettyMIDI(str(first)).get_piano_roll(fs=100)  # pretty_midi's roll: the reference's
    back = np.asarray(mido_notes(write_midi(roll, tmp_path / "r.mid", fs=100, program=73)))
    assert np.array_equal(back[:, 2], notes[:, 2]) and np.all(back[:, 3] == 90) and np.all(back[:, 4] == 73)
    assert np.max(np.abs(back[:, :2] - notes[:, :2])) <= 0.01 + 0.5 / 220  # one roll frame plus one tick
    binary = (roll > 0).astype(np.float32)
    assert np.all(roll_to_notes(binary, 100)[:, 3] == 100)  # a 0/1 roll plays at velocity 100


# ----------------------------------------------------------------------------------------------------- MP4
def test_mp4_frames_read_back_with_pyav(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    base = _astronaut().repeat(2, 0).repeat(2, 1)  # (64, 64, 3)
    frames = np.stack([np.roll(base, 4 * t, axis=1) for t in range(12)])  # a real photograph panning
    path = write_mp4(frames, 12, tmp_path / "v.mp4")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 12.0
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert decoded.shape == frames.shape
    err = np.abs(decoded.astype(np.int64) - frames.astype(np.int64))
    # codec tolerance: crf 12 with 4:2:0 chroma on a sharp 64x64 photograph; measured (torch 2.13, PyAV 18.1):
    # mean 2.54, 99th percentile 13, maximum 25 levels of 255
    assert err.mean() < 4.0 and np.percentile(err, 99) < 20
    grey = np.stack([_camera()] * 4)
    with av.open(str(write_mp4(grey.astype(np.float64) / 255.0, 4, tmp_path / "g.mp4"))) as container:
        back = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])
    # luma only, no chroma subsampling: measured mean 0.60, maximum 4
    assert back.shape == grey.shape and np.abs(back.astype(int) - grey).mean() < 1.5
    assert np.abs(back.astype(int) - grey).max() <= 8
    assert write_mp4(frames, np.int64(12), tmp_path / "v2.mp4").read_bytes() == path.read_bytes()


def test_mp4_with_an_audio_track(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    speech, rate = _speech()
    frames = np.stack([_camera()] * 10)
    path = write_mp4(frames, 10, tmp_path / "a.mp4", audio=speech[:rate], sample_rate=rate)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].rate == rate and len(list(container.decode(video=0))) == 10


# -------------------------------------------------------------------------------------------------- tokens
def test_tokens_are_int64_npy(tmp_path: Path) -> None:
    tokens = torch.randint(0, 50, (4, 64), generator=torch.Generator().manual_seed(0)).to(torch.int32)
    back = np.load(write_tokens(tokens, tmp_path / "t.npy", vocab_size=50), allow_pickle=False)
    assert back.dtype == np.int64 and back.shape == (4, 64) and np.array_equal(back, tokens.numpy())


# -------------------------------------------------------------------------------------------------- errors
def test_bad_input_is_a_typed_error_naming_the_field(tmp_path: Path) -> None:
    nan_wave = np.zeros(100)
    nan_wave[7] = np.nan
    cases = [
        (lambda: write_wav(nan_wave, 16000, tmp_path / "x.wav"), NonFiniteError, "waveform"),
        (lambda: write_wav(np.zeros(100, np.int16), 16000, tmp_path / "x.wav"), ShapeError, "waveform"),
        (lambda: write_wav(np.full(10, 1.5), 16000, tmp_path / "x.wav"), DataError, "waveform"),
        (lambda: write_wav(np.zeros((2, 3, 4)), 16000, tmp_path / "x.wav"), ShapeError, "waveform"),
        (lambda: write_wav(np.zeros(10), 16000.5, tmp_path / "x.wav"), SampleRateError, "sample_rate"),
        (lambda: write_wav(np.zeros(10), 0, tmp_path / "x.wav"), SampleRateError, "sample_rate"),
        (lambda: write_png(np.zeros((3, 8, 8)), tmp_path / "x.png"), ShapeError, "image"),
        (lambda: write_png(np.full((8, 8), np.nan), tmp_path / "x.png"), NonFiniteError, "image"),
        (lambda: write_png(np.full((8, 8), 2.0), tmp_path / "x.png"), DataError, "image"),
        (lambda: write_png(np.zeros((8, 8), np.int64), tmp_path / "x.png"), ShapeError, "image"),
        (lambda: write_png(np.zeros((8, 8)), tmp_path / "x.png", scale=0), DataError, "scale"),
        (lambda: write_png(np.zeros((8, 8)), tmp_path / "x.jpg"), DataError, "x.jpg"),
        (lambda: write_midi(np.array([[1.0, 0.5, 60, 90, 0]]), tmp_path / "x.mid"), DataError, "notes"),
        (lambda: write_midi(np.array([[0.0, 0.5, 200, 90, 0]]), tmp_path / "x.mid"), DataError, "notes"),
        (lambda: write_midi(np.zeros((3, 4)), tmp_path / "x.mid"), ShapeError, "notes"),
        (lambda: write_midi(np.zeros((64, 10)), tmp_path / "x.mid", fs=100), ShapeError, "piano_roll"),
        (lambda: write_midi(np.zeros((128, 10)), tmp_path / "x.mid", fs=0), SampleRateError, "fs"),
        (lambda: write_midi(np.full((128, 10), 0.4), tmp_path / "x.mid", fs=100), DataError, "piano_roll"),
        (lambda: write_midi(np.full((128, 10), 200.0), tmp_path / "x.mid", fs=100), DataError, "piano_roll"),
        (lambda: write_midi(np.zeros((0, 5)), tmp_path / "x.mid", tempo="fast"), DataError, "tempo"),
        (lambda: write_mp4(np.zeros((2, 9, 8, 3), np.uint8), 10, tmp_path / "x.mp4"), ShapeError, "frames"),
        (lambda: write_mp4(np.zeros((2, 8, 8, 3), np.uint8), 0, tmp_path / "x.mp4"), DataError, "fps"),
        (lambda: write_mp4(np.zeros((2, 8, 8, 3), np.uint8), 10, tmp_path / "x.mp4", audio=np.zeros(100)),
         SampleRateError, "sample_rate"),
        (lambda: write_tokens(np.zeros((2, 3)), tmp_path / "x.npy"), ShapeError, "tokens"),
        (lambda: write_tokens(np.array([[1, 50]]), tmp_path / "x.npy", vocab_size=50), DataError, "tokens"),
        (lambda: write_tokens(np.array([[-1, 2]]), tmp_path / "x.npy"), DataError, "tokens"),
    ]
    for call, error, field in cases:
        with pytest.raises(error) as info:
            call()
        assert field in str(info.value), (field, str(info.value))
    assert not any(tmp_path.iterdir())  # nothing was written for any of them
