"""``xmodal train RECIPE.yaml [--set key=value ...] [--resume] [--out DIR]``; also under ``torchrun -m xmodal``."""

from __future__ import annotations

from pathlib import Path

import typer


def train(
    recipe: Path = typer.Argument(..., help="YAML recipe: task, data/model sections, train section."),
    set: list[str] = typer.Option([], "--set", help="Override a recipe value: --set train.lr=3e-4 (repeatable)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint in the run folder."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: train.out_dir, then runs/<task>)."),
) -> None:
    """Train a task from a recipe (single process, or one process per rank under torchrun)."""
    import json

    from rich.console import Console

    from xmodal.tasks.base import build_task
    from xmodal.train import distributed as xdist
    from xmodal.train.config import load_recipe, parse_train_config
    from xmodal.train.loop import seed_everything
    from xmodal.train.loop import train as run_training

    cfg = load_recipe(recipe, set)
    tc = parse_train_config(cfg.get("train"))  # fail on a bad train section before building data
    env = xdist.init_distributed()
    try:
        # Rank 0 builds first, so that data a task builds and caches on first use is written by one process;
        # the other ranks then read the cache.
        if not env.is_main:
            xdist.barrier()
        seed_everything(tc.seed)  # same model init on every rank
        bundle = build_task(cfg)
        if env.is_main:
            xdist.barrier()
        result = run_training(bundle, cfg, out_dir=out, resume=resume, env=env)
    finally:
        xdist.shutdown(env)
    if env.is_main:
        console = Console()
        console.print(
            f"trained {result.steps} steps ({result.epochs:.2f} epochs) in {result.train_seconds:.1f} s, "
            f"{result.samples_per_second:.0f} samples/s; final loss {'n/a' if result.final_loss is None else f'{result.final_loss:.4f}'}"
        )
        console.print(f"checkpoint: {result.checkpoint}")
        if result.metrics:
            console.print_json(json.dumps(result.metrics))
