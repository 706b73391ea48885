"""``xmodal eval audio`` (STOI, ESTOI, PESQ, SNR family on paired files) and ``xmodal eval mos`` (ratings)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from xmodal.cli._options import metric_list, positive_workers, write_json
from xmodal.cli.eval import eval_app

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
METRICS = ("stoi", "estoi", "pesq", "si_snr", "si_sdr", "snr")


def _audio_files(folder: Path) -> dict[str, Path]:
    """Audio files of a folder keyed by stem; two files with one stem are ambiguous."""
    from xmodal.errors import DataError, MissingFileError

    if not folder.is_dir():
        raise MissingFileError("not a directory", folder)
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in AUDIO_SUFFIXES:
            if p.stem in files:
                raise DataError(
                    f"two audio files share the name {p.stem!r}: {files[p.stem].name}, {p.name}", folder
                )
            files[p.stem] = p
    return files


def pair_files(ref_dir: Path, gen_dir: Path) -> list[tuple[str, Path, Path]]:
    """Pair reference and generated files by name (without extension); any unpaired file is an error."""
    from xmodal.errors import EmptyInputError, MetricInputError

    refs, gens = _audio_files(ref_dir), _audio_files(gen_dir)
    only_ref, only_gen = sorted(set(refs) - set(gens)), sorted(set(gens) - set(refs))
    if only_ref or only_gen:
        raise MetricInputError(
            f"unpaired files: missing in --gen {only_ref}, missing in --ref {only_gen}", gen_dir
        )
    if not refs:
        raise EmptyInputError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})", ref_dir)
    return [(name, refs[name], gens[name]) for name in sorted(refs)]


def _load_pair(ref_path: Path, gen_path: Path, trim: bool):
    import numpy as np

    from xmodal.data.io.audio import read_audio
    from xmodal.errors import SampleRateError, ShapeError

    ref, fs = read_audio(ref_path)
    gen, fs_gen = read_audio(gen_path)
    if fs_gen != fs:
        raise SampleRateError(
            f"sample rate {fs_gen} Hz differs from the reference's {fs} Hz ({ref_path})", gen_path
        )
    if ref.shape != gen.shape:
        if not trim:
            raise ShapeError(
                f"{gen.size} samples but the reference {ref_path.name} has {ref.size}; "
                "align them or pass --trim to cut both to the shorter",
                gen_path,
            )
        n = min(ref.size, gen.size)
        ref, gen = ref[:n], gen[:n]
    return ref.astype(np.float64), gen.astype(np.float64), fs


def evaluate_audio_dirs(
    ref_dir: Path,
    gen_dir: Path,
    metrics: list[str],
    pesq_mode: str = "wb",
    pesq_resample: bool = False,
    trim: bool = False,
    workers: Optional[int] = None,
    progress: bool = True,
) -> dict:
    """Score every paired file; returns {'metrics', 'n_files', 'mean', 'per_file'}."""
    import numpy as np
    from tqdm import tqdm

    from xmodal.data.io.audio import resample
    from xmodal.errors import ConfigError, DataError
    from xmodal.metrics import audio as A

    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ConfigError(f"--metrics: unknown metric(s) {unknown}; choose from {list(METRICS)}")
    positive_workers(workers)
    pairs = pair_files(ref_dir, gen_dir)
    per_file: dict[str, dict[str, float]] = {name: {} for name, _, _ in pairs}
    pesq_jobs: list[tuple[str, np.ndarray, np.ndarray, int]] = []
    fns = {
        "stoi": lambda r, g, fs: A.stoi(r, g, fs),
        "estoi": lambda r, g, fs: A.estoi(r, g, fs),
        "si_snr": lambda r, g, fs: A.si_snr(g, r),
        "si_sdr": lambda r, g, fs: A.si_sdr(g, r),
        "snr": lambda r, g, fs: A.snr(g, r),
    }
    # The bar goes to stderr so that stdout holds only the JSON.
    with tqdm(total=len(pairs) * (1 + ("pesq" in metrics)), desc="scoring", disable=not progress,
              leave=False) as bar:
        for name, ref_path, gen_path in pairs:
            ref, gen, fs = _load_pair(ref_path, gen_path, trim)
            try:
                for m in metrics:
                    if m != "pesq":
                        per_file[name][m] = float(fns[m](ref, gen, fs))
            except DataError as exc:
                raise type(exc)(f"{exc} (pair {name!r})", gen_path) from exc
            if "pesq" in metrics:
                if fs not in (8000, 16000) and pesq_resample:
                    ref, gen, fs = resample(ref, fs, 16000), resample(gen, fs, 16000), 16000
                pesq_jobs.append((name, ref, gen, fs))
            bar.update()
        # PESQ runs many pairs at once over worker processes, a chunk at a time so the bar moves.
        chunk = 4 * (workers or 2)
        for lo in range(0, len(pesq_jobs), chunk):
            part = pesq_jobs[lo : lo + chunk]
            for fs in sorted({j[3] for j in part}):
                group = [j for j in part if j[3] == fs]
                try:
                    scores = A.pesq_batch(
                        [j[1] for j in group], [j[2] for j in group], fs, pesq_mode, workers
                    )
                except DataError as exc:
                    hint = (
                        " (pass --pesq-resample to resample to 16 kHz)" if "sample rate" in str(exc) else ""
                    )
                    raise type(exc)(
                        f"{exc}{hint}; batch items in order: {[j[0] for j in group]}", gen_dir
                    ) from exc
                for j, s in zip(group, scores):
                    per_file[j[0]]["pesq"] = float(s)
            bar.update(len(part))
    mean = {m: float(np.mean([per_file[n][m] for n in per_file])) for m in metrics}
    return {"metrics": metrics, "n_files": len(pairs), "mean": mean, "per_file": per_file}


@eval_app.command("audio")
def eval_audio(
    ref: Path = typer.Option(..., "--ref", help="Folder of reference (clean) audio."),
    gen: Path = typer.Option(..., "--gen", help="Folder of generated or degraded audio; files pair by name."),
    metrics: str = typer.Option(
        "stoi,estoi,pesq,si_snr", "--metrics", help=f"Comma list of {','.join(METRICS)}."
    ),
    pesq_mode: str = typer.Option("wb", "--pesq-mode", help="PESQ mode: wb (16 kHz) or nb (8/16 kHz)."),
    pesq_resample: bool = typer.Option(
        False, "--pesq-resample", help="Resample to 16 kHz for PESQ when needed."
    ),
    trim: bool = typer.Option(
        False, "--trim", help="Cut each pair to the shorter length instead of failing."
    ),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for PESQ (default: all CPUs)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Score paired audio files with speech metrics (pystoi, ITU P.862, torchmetrics); print JSON."""
    result = evaluate_audio_dirs(
        ref, gen, metric_list(metrics, METRICS), pesq_mode, pesq_resample, trim, positive_workers(workers)
    )
    typer.echo(write_json(result, out))


@eval_app.command("mos")
def eval_mos(
    ratings: Path = typer.Argument(..., help="CSV with columns rater,item,system,score."),
    scale_min: float = typer.Option(1, help="Lowest valid score."),
    scale_max: float = typer.Option(5, help="Highest valid score."),
    ddof: int = typer.Option(
        0, help="Variance normalisation: 0 as the Python CrowdMOS port, 1 as MATLAB nanvar."
    ),
) -> None:
    """MOS per system with CrowdMOS 95% confidence intervals, and paired tests between systems; print JSON."""
    from xmodal.metrics.mos import mos_report

    # One rater gives no confidence interval: NaN in Python, null in the JSON.
    typer.echo(write_json(mos_report(ratings, (scale_min, scale_max), ddof), None))
