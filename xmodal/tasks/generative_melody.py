"""An autoregressive prior over melody tokens: the soprano lines of Bach's chorales (the music21 corpus), one
token per sixteenth note, learnt by :class:`~xmodal.generative.autoregressive.TransformerPrior`; ``generate``
writes the sampled tokens, each sample as MIDI, as a WAV (a plain additive synthesiser, no sound font) and as a
piano-roll PNG.

Tokens (``melody_vocab``): 0 is a rest, 1 holds the note sounding in the previous step, ``2 + p - low`` starts
pitch ``p`` in ``low .. high`` (MIDI numbers). The first part of a chorale's score (the soprano line in the
corpus's layout; ties merged by music21's ``stripTies``) is laid on a grid of sixteenth notes and cut into
non-overlapping windows of ``data.seq_len`` steps (a shorter last window is left out). A chorale holding a
note off the grid or outside ``low .. high`` is left out whole, and counted: a warning says how many (5 of the
350 hold a note off the sixteenth grid: thirty-second notes in bwv36.4-2, bwv161.6 and bwv432, grace notes of
no duration in bwv299 and bwv315).

The chorales (music21's 350 distinct chorale files) are split by tune, not by file (:func:`split`): Bach set
many hymn tunes several times, and chorales that share a run of twelve pitch intervals are one group
(:func:`compute_tune_groups`), wholly on one side. The evaluation is the held-out windows' negative
log-likelihood in bits per token (teacher forcing, lower is better) beside two baselines fitted on the
training windows: token frequencies (unigram) and a first-order Markov chain (bigram), both add-one smoothed.

Recipe sections: ``data: {n_train, n_val, seq_len, low, high, seed}``, ``model: {dim, depth, heads, dropout,
temperature, top_k, top_p}``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.tasks.base import TaskBundle
from xmodal.tasks.generative_parts import seeded

log = logging.getLogger(__name__)

REST, HOLD, FIRST_PITCH = 0, 1, 2
STEP = 0.25  # quarter notes per token: a sixteenth
TEMPO = 100.0  # beats per minute of the written MIDI and WAV: a sixteenth lasts 0.15 s
SAMPLE_RATE = 16000
CHORALES = 350  # distinct files in music21 10's corpus.chorales (its list of 371 names 21 twice or more)


@dataclass
class DataConfig:
    n_train: int = 280
    n_val: int = 60
    seq_len: int = 64  # sixteenths: four bars of 4/4
    low: int = 53  # MIDI pitch range of the tokens: F3 .. E6 holds every note of the corpus's first parts
    high: int = 88
    seed: int = 0


@dataclass
class ModelConfig:
    dim: int = 128
    depth: int = 4
    heads: int = 4
    dropout: float = 0.1
    temperature: float = 1.0  # sampling in generate
    top_k: int | None = None
    top_p: float | None = None


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.n_train < 1 or d.n_val < 1 or d.n_train + d.n_val > CHORALES:
        raise ConfigError(f"data.n_train and data.n_val: must be >= 1 and sum to at most {CHORALES} chorales, got "
                          f"{d.n_train} and {d.n_val}")
    if d.seq_len < 2:
        raise ConfigError(f"data.seq_len: must be >= 2, got {d.seq_len}")
    if not 0 <= d.low < d.high <= 127:
        raise ConfigError(f"data.low and data.high: need 0 <= low < high <= 127, got {d.low} and {d.high}")
    for key in ("dim", "depth", "heads"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if not 0.0 <= m.dropout < 1.0 or m.temperature < 0:
        raise ConfigError(f"model.dropout must be in [0, 1) and model.temperature >= 0, got {m.dropout}, "
                          f"{m.temperature}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


def melody_vocab(low: int, high: int) -> int:
    return FIRST_PITCH + high - low + 1


# --------------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=512)
def chorale_melody(index: int) -> tuple[tuple[float, float, int], ...]:
    """``(onset, duration, pitch)`` in quarter notes of the first part of the ``index``-th distinct chorale,
    ties merged; a chord (none in the corpus's soprano lines) gives its highest pitch."""
    from music21 import corpus

    names = _chorale_names()
    part = corpus.parse(names[index]).parts[0].stripTies()
    notes = []
    for n in part.flatten().notes:
        pitch = max(p.midi for p in n.pitches)
        notes.append((float(n.offset), float(n.quarterLength), int(pitch)))
    return tuple(notes)


@lru_cache(maxsize=1)
def _chorale_names() -> tuple[str, ...]:
    """The distinct chorale files, in music21's order: its iterator names 21 files twice (bwv36.4-2 three
    times), and a split over its 371 entries would put the same chorale on both sides."""
    from music21 import corpus

    from xmodal.errors import DataError

    names = tuple(dict.fromkeys(str(n) for n in corpus.chorales.Iterator(returnType="filename")))
    if len(names) != CHORALES:
        raise DataError(f"the split is defined over music21 10's {CHORALES} distinct chorale files; this music21 "
                        f"lists {len(names)}", source="music21.corpus.chorales")
    return names


def encode(notes: tuple[tuple[float, float, int], ...], low: int, high: int) -> np.ndarray | None:
    """int64 tokens of a melody on the sixteenth grid; None when a note is off the grid or out of range."""
    if not notes:
        return None
    end = max(on + dur for on, dur, _ in notes)
    tokens = np.full(round(end / STEP), REST, dtype=np.int64)
    for on, dur, pitch in notes:
        a, b = on / STEP, (on + dur) / STEP
        if abs(a - round(a)) > 1e-6 or abs(b - round(b)) > 1e-6 or round(b) <= round(a) or not low <= pitch <= high:
            return None
        tokens[round(a)] = FIRST_PITCH + pitch - low
        tokens[round(a) + 1 : round(b)] = HOLD
    return tokens


def decode(tokens: Any, low: int) -> np.ndarray:
    """``(N, 5)`` notes (start s, end s, pitch, velocity 90, program 0) of a token row at :data:`TEMPO`; a hold
    with no note sounding (at the start, or after a rest) is silence."""
    seconds = STEP * 60.0 / TEMPO
    rows: list[list[float]] = []
    sounding = False
    for i, tok in enumerate(np.asarray(tokens).tolist()):
        if tok >= FIRST_PITCH:
            rows.append([i * seconds, (i + 1) * seconds, float(low + tok - FIRST_PITCH), 90.0, 0.0])
            sounding = True
        elif tok == HOLD and sounding:
            rows[-1][1] = (i + 1) * seconds
        else:
            sounding = False
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def windows(indices: tuple[int, ...], d: DataConfig) -> tuple[torch.Tensor, int]:
    """``(windows (n, seq_len) int64, chorales left out)`` of the chorales ``indices``."""
    rows, left_out = [], 0
    for i in indices:
        tokens = encode(chorale_melody(i), d.low, d.high)
        if tokens is None:
            left_out += 1
            continue
        rows += [tokens[s : s + d.seq_len] for s in range(0, len(tokens) - d.seq_len + 1, d.seq_len)]
    if not rows:
        raise ConfigError(f"data: no window of {d.seq_len} sixteenths in chorales {list(indices)[:5]}...")
    return torch.from_numpy(np.stack(rows)), left_out


TUNES = Path(__file__).with_name("generative_melody_tunes.json")  # compute_tune_groups()'s output, committed
NGRAM = 12  # intervals in a row two chorales must share to count as one tune


def compute_tune_groups(ngram: int = NGRAM) -> list[list[int]]:
    """Chorales that set the same hymn tune, as groups of indices (sorted; singletons included): two chorales
    are linked when their melodies share ``ngram`` consecutive pitch intervals (so a tune in another key, rhythm
    or with a passing note elsewhere is still found), and groups are the connected components. Bach set many
    tunes several times: a split by file put 9.9% of the held-out windows verbatim, and 22.9% transposed, into
    the training set. Parses every chorale (minutes); :data:`TUNES` holds the result."""
    parent = list(range(CHORALES))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict[tuple[int, ...], int] = {}
    for i in range(CHORALES):
        intervals = np.diff([p for _, _, p in chorale_melody(i)]).tolist()
        for s in range(len(intervals) - ngram + 1):
            key = tuple(intervals[s : s + ngram])
            if key in seen:
                parent[root(i)] = root(seen[key])
            else:
                seen[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(CHORALES):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values())


@lru_cache(maxsize=1)
def tune_groups() -> tuple[tuple[int, ...], ...]:
    import json

    return tuple(tuple(g) for g in json.loads(TUNES.read_text(encoding="utf-8"))["groups"])


def split(d: DataConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(train, held-out)`` chorale indices: the tune groups in an order seeded by ``data.seed``, the first
    ``n_val`` chorales held out and the next ``n_train`` for training; the members of the group cut by the
    boundary that did not make the held-out set are used by neither side, so no tune is on both sides."""
    groups = tune_groups()
    order = np.random.default_rng(d.seed).permutation(len(groups)).tolist()
    flat = [(i, g) for g in order for i in groups[g]]
    held = [i for i, _ in flat[: d.n_val]]
    cut = flat[d.n_val - 1][1]
    train = [i for i, g in flat[d.n_val :] if g != cut][: d.n_train]
    if len(train) < d.n_train:
        raise ConfigError(f"data.n_train: only {len(train)} chorales of other tunes than the {d.n_val} held out "
                          f"are left (data.n_val={d.n_val}); ask for at most that many")
    return tuple(train), tuple(held)


class MelodyWindows(Dataset):
    """``{"tokens": (seq_len,) int64, "id": i}``; the chorales are parsed on first use (``xmodal generate``
    builds the task without reading them)."""

    deterministic_items = True

    def __init__(self, indices: tuple[int, ...], d: DataConfig, what: str) -> None:
        self.indices, self.d, self.what = indices, d, what
        self._tokens: torch.Tensor | None = None

    @property
    def tokens(self) -> torch.Tensor:
        if self._tokens is None:
            self._tokens, left_out = windows(self.indices, self.d)
            self.left_out = left_out
            (log.warning if left_out else log.info)(
                "%s: %d windows of %d chorales (%d left out: a note off the sixteenth grid or outside %d..%d)",
                self.what, len(self._tokens), len(self.indices), left_out, self.d.low, self.d.high)
        return self._tokens

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"tokens": self.tokens[index], "id": index}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tokens": torch.stack([s["tokens"] for s in samples]), "id": [s["id"] for s in samples]}


# ------------------------------------------------------------------------------------------------- model
class MelodyPrior(nn.Module):
    """An unconditional :class:`TransformerPrior`; ``forward(batch)`` returns the mean next-token cross-entropy."""

    def __init__(self, d: DataConfig, m: ModelConfig) -> None:
        from xmodal.generative.autoregressive import TransformerPrior

        super().__init__()
        self.prior = TransformerPrior(melody_vocab(d.low, d.high), d.seq_len, dim=m.dim, depth=m.depth,
                                      heads=m.heads, dropout=m.dropout)
        self.m = m

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": self.prior.loss(batch["tokens"])["loss"]}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.prior.sample(n, temperature=self.m.temperature, top_k=self.m.top_k, top_p=self.m.top_p,
                                 generator=generator)


def mean_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    return outputs["loss"]


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Held-out negative log-likelihood, bits per token (the first token of a window given the start token)."""
    tokens: torch.Tensor = dataset.tokens  # type: ignore[attr-defined]
    device = next(model.parameters()).device
    total = 0.0
    for s in range(0, len(tokens), batch_size):
        chunk = tokens[s : s + batch_size].to(device)
        logits = model.prior(chunk)  # type: ignore[operator]
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), chunk.reshape(-1),
                                       reduction="sum"))
    return {"nll_bits": total / tokens.numel() / math.log(2)}


def ngram_bits(train: torch.Tensor, held: torch.Tensor, vocab: int) -> dict[str, dict[str, float]]:
    """Bits per held-out token of add-one smoothed unigram and bigram models of the training windows (the
    bigram's first token of a window is conditioned on a start state of its own)."""
    tr, he = train.numpy(), held.numpy()
    uni = np.bincount(tr.reshape(-1), minlength=vocab) + 1.0
    uni_bits = -np.log2(uni / uni.sum())[he].mean()
    big = np.ones((vocab + 1, vocab))  # row ``vocab``: the start state
    prev_tr = np.concatenate([np.full((len(tr), 1), vocab), tr[:, :-1]], 1)
    np.add.at(big, (prev_tr.reshape(-1), tr.reshape(-1)), 1.0)
    big /= big.sum(1, keepdims=True)
    prev_he = np.concatenate([np.full((len(he), 1), vocab), he[:, :-1]], 1)
    big_bits = -np.log2(big[prev_he, he]).mean()
    return {"unigram": {"nll_bits": float(uni_bits)}, "bigram": {"nll_bits": float(big_bits)}}


# ------------------------------------------------------------------------------------------------- files
def synthesize(notes: np.ndarray, duration: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 ``(time,)`` of ``duration`` seconds: each note a sine with two overtones (amplitudes 0.3, 0.1,
    0.05), 10 ms linear attack and release, peak 0.45 (the melody is monophonic, so the sum stays in [-1, 1])."""
    out = np.zeros(round(duration * sample_rate), dtype=np.float64)
    ramp = int(0.01 * sample_rate)
    for start, end, pitch, _, _ in notes:
        a, b = round(start * sample_rate), min(round(end * sample_rate), len(out))
        t = np.arange(b - a) / sample_rate
        f = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
        tone = 0.3 * np.sin(2 * np.pi * f * t) + 0.1 * np.sin(4 * np.pi * f * t) + 0.05 * np.sin(6 * np.pi * f * t)
        env = np.minimum(1.0, np.minimum(np.arange(b - a) + 1, np.arange(b - a)[::-1] + 1) / ramp)
        out[a:b] += tone * env
    return out.astype(np.float32)


def piano_roll_image(tokens: np.ndarray, low: int, high: int) -> np.ndarray:
    """uint8 ``(pitches, steps)`` picture of a token row, high pitches on top: onsets white, holds grey."""
    img = np.zeros((high - low + 1, len(tokens)), dtype=np.uint8)
    pitch = None
    for i, tok in enumerate(tokens.tolist()):
        if tok >= FIRST_PITCH:
            pitch = tok - FIRST_PITCH
            img[high - low - pitch, i] = 255
        elif tok == HOLD and pitch is not None:
            img[high - low - pitch, i] = 160
        else:
            pitch = None
    return img


def generate(model: nn.Module, n: int, seed: int, out: Path, *, low: int, high: int) -> list[Path]:
    """``tokens.npy`` (int64 ``(n, seq_len)``) and for each sample ``sample_<i>.mid``, ``sample_<i>.wav`` (16 kHz,
    16-bit) and ``sample_<i>.png`` (piano roll, 4x), all drawn from ``seed``."""
    from xmodal.generative.writers import write_midi, write_png, write_tokens, write_wav

    device = next(model.parameters()).device
    tokens = model.sample(n, seeded(seed, device)).cpu().numpy()  # type: ignore[operator]
    paths = [write_tokens(tokens, out / "tokens.npy", vocab_size=melody_vocab(low, high))]
    duration = tokens.shape[1] * STEP * 60.0 / TEMPO
    for i, row in enumerate(tokens):
        notes = decode(row, low)
        paths += [write_png(piano_roll_image(row, low, high), out / f"sample_{i:04d}.png", scale=4),
                  write_wav(synthesize(notes, duration), SAMPLE_RATE, out / f"sample_{i:04d}.wav"),
                  write_midi(notes, out / f"sample_{i:04d}.mid", tempo=TEMPO)]
    return paths


def build(cfg: dict[str, Any]) -> TaskBundle:
    from functools import partial

    d, m = _configs(cfg)
    train_idx, held_idx = split(d)
    train_set, val_set = MelodyWindows(train_idx, d, "train"), MelodyWindows(held_idx, d, "heldout")
    vocab = melody_vocab(d.low, d.high)
    return TaskBundle(model=MelodyPrior(d, m), loss=mean_loss, train_set=train_set, collate=collate,
                      val_set=val_set, evaluate=evaluate, primary="nll_bits", higher_is_better=False,
                      baselines=lambda ds: ngram_bits(train_set.tokens, ds.tokens, vocab),  # type: ignore[attr-defined]
                      generate=partial(generate, low=d.low, high=d.high), modality="music", split="heldout",
                      artifacts={"generative": {"vocab": {"rest": REST, "hold": HOLD, "first_pitch": FIRST_PITCH,
                                                          "low": d.low, "high": d.high},
                                                "step_quarters": STEP, "tempo": TEMPO, "seq_len": d.seq_len}})
