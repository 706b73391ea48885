"""``xmodal fit DATA --target COLUMN [--time-budget SECONDS] [--out DIR]``: plan, train and evaluate within a
wall-time budget; also under ``torchrun -m xmodal``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fit(
    data: Annotated[Path, typer.Argument(help="a folder of class folders, a folder of stem-paired files with "
                                         "labels.csv, or a CSV/JSONL/Parquet table")],
    target: Annotated[str | None, typer.Option("--target", help="the column to predict")] = None,
    time_budget: Annotated[float, typer.Option("--time-budget", help="wall-time seconds for everything: "
                                               "reading, training, evaluation, report")] = 120.0,
    out: Annotated[Path, typer.Option("--out", help="output folder: recipe.yaml, metrics.json, report.html, "
                                      "run/ (the fused model), alone/<column>/ (each input alone)")] = Path("runs/fit"),
    seed: Annotated[int, typer.Option("--seed", help="the held-out split and the training seed")] = 0,
) -> None:
    """Infer the plan, train it and each input alone, and report the fused model against the baselines."""
    import json

    from xmodal.automl.fit import fit as run_fit
    from xmodal.train import distributed as xdist

    doc = run_fit(data, target, time_budget, out, seed, from_process_start=True)
    if doc and xdist.is_main():
        typer.echo(json.dumps(doc, indent=1))
        typer.echo(f"report: {out / 'report.html'}")
