"""``xmodal generate RUN_DIR --n N --seed S --out DIR``: samples of a trained generative run and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def generate(
    source: Annotated[Path, typer.Argument(help="A run directory (from xmodal train) of a generative task.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the samples and report.html.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples' noise: the same seed, the same "
                                                     "samples.")] = 0,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best, last, or a checkpoint directory.")] = "best",
) -> None:
    """Draw N samples from a trained generative model (PNG for images, WAV, MIDI, MP4 or token files, as the
    task's modality says) and write report.html to look at and listen to them (offline)."""
    import json

    from rich.console import Console

    from xmodal.errors import ConfigError
    from xmodal.report.samples import write_sample_report
    from xmodal.tasks.runs import load_trained
    from xmodal.train.evaluation import METRICS

    if n < 1:
        raise ConfigError(f"--n: must be >= 1, got {n}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; give a folder")
    bundle, recipe, directory = load_trained(source, checkpoint)
    if bundle.generate is None:
        raise ConfigError(f"task {recipe.get('task')!r} does not generate samples (its bundle has no generate)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create: {exc.strerror}") from exc
    files = bundle.generate(bundle.model, n, seed, out)
    metrics_path = source / METRICS if source.is_dir() else None
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path and metrics_path.is_file() else None
    info = {"task": recipe.get("task"), "run": str(source), "checkpoint": str(directory), "n": n, "seed": seed,
            "modality": bundle.modality}
    report = write_sample_report(out, files, info, metrics)
    Console().print(f"{n} samples (seed {seed}) from {directory}: {len(files)} files in {out}; {report}")
