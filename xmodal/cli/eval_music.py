"""``xmodal eval music``: beat, structure, symbolic and genre metrics of generated music, as JSON.

Audio metrics pair reference and generated files by sorted file name, as the D2M-GAN/CDCD beat-score script
does (sorted glob, i-th with i-th); audio is read with ``librosa.load`` at 22050 Hz mono, as there.
Symbolic metrics (MusDr H/GS/CPI) read the MIDI files of a folder; structureness reads its audio files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from xmodal.cli._options import write_json
from xmodal.cli.eval import eval_app

T = TypeVar("T")

AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif"}
MIDI_EXT = {".mid", ".midi"}
PAIR_METRICS = ("beat_coverage", "beat_hit", "beat_f1")
SYMBOLIC_METRICS = ("pitch_entropy_1", "pitch_entropy_4", "grooving_similarity", "chord_irregularity")
SI_METRICS = {"si_3_8": (3, 8), "si_8_15": (8, 15), "si_15_128": (15, 128)}  # MusDr's three ranges
ALIASES = {"H1": "pitch_entropy_1", "H4": "pitch_entropy_4", "GS": "grooving_similarity",
           "CPI": "chord_irregularity", "SI": "si_3_8", "genre": "genre_accuracy"}
ALL_METRICS = PAIR_METRICS + SYMBOLIC_METRICS + tuple(SI_METRICS) + ("genre_accuracy",)


def _files(folder: Optional[Path], ext: set[str], flag: str) -> list[Path]:
    from xmodal.errors import DataError, MissingFileError

    if folder is None:
        raise DataError(f"{flag} is needed for the metrics asked for")
    if not folder.is_dir():
        raise MissingFileError(f"not a directory ({flag})", folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ext)


def load_audio(path: Path, sr: int):
    """``librosa.load(path, sr=sr)`` (mono, soxr_hq), as the reference scripts read audio; an undecodable,
    empty or non-finite file is a typed error naming it (librosa would raise its own errors, and NaN audio can
    abort the process in the analysis that follows)."""
    import librosa
    import numpy as np

    from xmodal.data.io._common import decoding
    from xmodal.errors import CorruptFileError, EmptyInputError, NonFiniteError

    try:
        with decoding(path, "audio"):
            x, _ = librosa.load(path, sr=sr)
    except CorruptFileError as exc:
        if "not finite" in str(exc.__cause__):  # librosa's own check, while resampling
            raise NonFiniteError("holds NaN or infinite samples", source=path) from exc
        raise
    if x.size == 0:
        raise EmptyInputError("holds no audio samples", source=path)
    if not np.all(np.isfinite(x)):
        raise NonFiniteError(f"{int((~np.isfinite(x)).sum())} samples are NaN or infinite", source=path)
    return x


def parse_metrics(spec: str) -> list[str]:
    """Comma-separated names (aliases H1, H4, GS, CPI, SI, genre) -> canonical names, order kept."""
    from xmodal.errors import ConfigError

    names = []
    for raw in (s.strip() for s in spec.split(",") if s.strip()):
        name = ALIASES.get(raw, raw)
        if name not in ALL_METRICS:
            raise ConfigError(f"--metrics: unknown metric {raw!r}; choose from {', '.join(ALL_METRICS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError("--metrics is empty")
    return names


def _mean(values: list[Any]) -> float:
    return float(sum(values) / len(values))


def _scored(items: list[T], desc: str, score: Callable[[T], dict[str, Any]]) -> list[dict[str, Any]]:
    """``score(item)`` per item, with a progress bar on stderr (stdout stays pure JSON)."""
    from tqdm import tqdm

    return [score(item) for item in tqdm(items, desc=desc, leave=False)]


def _summarise(result: dict[str, Any], key: str, names: list[str], rows: list[dict[str, Any]]) -> None:
    """Record the rows under ``per_file[key]``, their count, and each metric's mean over them."""
    for m in names:
        result["metrics"][m] = _mean([row[m] for row in rows])
    result["per_file"][key] = rows
    result["counts"][key] = len(rows)


@eval_app.command("music")
def eval_music(
    gen: Path = typer.Option(..., "--gen", help="Folder of generated audio and/or MIDI files."),
    ref: Optional[Path] = typer.Option(None, "--ref", help="Folder of reference audio (paired by sorted name)."),
    metrics: str = typer.Option("beat_coverage,beat_hit", "--metrics",
                                help=f"Comma-separated: {', '.join(ALL_METRICS)} (aliases H1,H4,GS,CPI,SI)."),
    genre_model: Optional[Path] = typer.Option(None, "--genre-model",
                                               help="Folder written by GenreClassifier.save; generated clips "
                                                    "sit in sub-folders named by their conditioning genre."),
    seed: int = typer.Option(0, help="Seed of the bar pairs grooving similarity samples (more than 1000)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Score generated music against references; prints JSON (means and per-file values)."""
    from xmodal.errors import DataError, MetricInputError
    from xmodal.metrics import music as mm

    names = parse_metrics(metrics)
    result: dict = {"metrics": {}, "per_file": {}, "counts": {}}
    pair_names = [m for m in names if m in PAIR_METRICS]
    if pair_names:
        refs, gens = _files(ref, AUDIO_EXT, "--ref"), _files(gen, AUDIO_EXT, "--gen")
        if len(refs) != len(gens) or not refs:
            raise MetricInputError(f"need the same non-zero number of audio files in --ref ({len(refs)}) "
                                   f"and --gen ({len(gens)}): they are paired by sorted name")

        def score_pair(files: tuple[Path, Path]) -> dict[str, Any]:
            r, g = files
            x_ref, x_gen = load_audio(r, mm.beats.BEAT_SR), load_audio(g, mm.beats.BEAT_SR)
            pair: dict[str, float] = {}
            try:
                if "beat_coverage" in pair_names or "beat_hit" in pair_names:
                    cov, hit = mm.coverage_hit(mm.onset_bins(x_ref), mm.onset_bins(x_gen))
                    pair.update(beat_coverage=cov, beat_hit=hit)
                if "beat_f1" in pair_names:
                    pair["beat_f1"] = mm.beat_f_measure(mm.beat_times(x_ref), mm.beat_times(x_gen))
            except DataError as exc:  # name the pair at fault
                raise type(exc)(str(exc), source=f"{r} / {g}") from exc
            return {"ref": r.name, "gen": g.name, **{k: pair[k] for k in pair_names}}

        _summarise(result, "pairs", pair_names, _scored(list(zip(refs, gens)), "beat scores", score_pair))

    sym_names = [m for m in names if m in SYMBOLIC_METRICS]
    if sym_names:
        mids = _files(gen, MIDI_EXT, "--gen")
        if not mids:
            raise MetricInputError(f"{gen}: no MIDI files (.mid, .midi) for {', '.join(sym_names)}")

        def score_midi(p: Path) -> dict[str, Any]:
            ev = mm.midi_to_events(p)
            row: dict[str, Any] = {"file": p.name}
            for m in sym_names:
                if m == "pitch_entropy_1":
                    row[m] = mm.pitch_class_entropy(ev, 1)
                elif m == "pitch_entropy_4":
                    row[m] = mm.pitch_class_entropy(ev, 4)
                elif m == "grooving_similarity":
                    row[m] = mm.grooving_similarity(ev, seed=seed)
                else:
                    row[m] = mm.chord_irregularity(ev)
            return row

        _summarise(result, "midi", sym_names, _scored(mids, "symbolic metrics", score_midi))

    si_names = [m for m in names if m in SI_METRICS]
    if si_names:
        wavs = _files(gen, AUDIO_EXT, "--gen")
        if not wavs:
            raise MetricInputError(f"{gen}: no audio files for {', '.join(si_names)}")

        def score_structure(p: Path) -> dict[str, Any]:
            x, sr = load_audio(p, mm.structure.ANALYSIS_SR), mm.structure.ANALYSIS_SR
            values = mm.structureness_many(x, sr, [SI_METRICS[m] for m in si_names])
            return {"file": p.name, **dict(zip(si_names, values))}

        _summarise(result, "structure", si_names, _scored(wavs, "structureness", score_structure))

    if "genre_accuracy" in names:
        from xmodal.errors import ConfigError

        if genre_model is None:
            raise ConfigError("genre_accuracy needs --genre-model (a folder written by GenreClassifier.save)")
        clf = mm.GenreClassifier.load(genre_model)
        clips, genres = [], []
        for sub in sorted(p for p in gen.iterdir() if p.is_dir()):
            for p in _files(sub, AUDIO_EXT, "--gen"):
                clips.append(load_audio(p, mm.genre.FEATURE_SR))
                genres.append(sub.name)
        if not clips:
            raise MetricInputError(f"{gen}: genre_accuracy expects audio in sub-folders named by genre")
        acc = mm.genre_accuracy(clf, clips, genres, mm.genre.FEATURE_SR)
        result["metrics"]["genre_accuracy"] = acc.accuracy
        result["per_file"]["genre"] = {"per_genre": acc.per_genre, "confusion": acc.confusion}
        result["counts"]["genre"] = acc.n

    typer.echo(write_json(result, out))
