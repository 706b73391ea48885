"""``xmodal predict RECIPE_OR_RUN_DIR --checkpoint {best|last|PATH} --out FILE``: predictions of a trained model."""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Annotated, cast

import typer


def predict(
    source: Annotated[Path, typer.Argument(help="A run directory (from xmodal train), or a recipe with "
                                                "--checkpoint PATH.")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .json or .csv (classification, regression), "
                                                    ".json or .safetensors (retrieval embeddings).")],
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best, last, or a checkpoint directory.")] = "best",
    split: Annotated[str, typer.Option("--split", help="val (the task's held-out split) or train.")] = "val",
) -> None:
    """Write the task's predictions for a split with a trained checkpoint (offline)."""
    from rich.console import Console

    from xmodal.errors import ConfigError
    from xmodal.tasks.runs import load_trained

    if split not in ("val", "train"):
        raise ConfigError(f"--split: expected val or train, got {split!r}")
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out}: is a directory; give a file name")
    bundle, recipe, directory = load_trained(source, checkpoint)
    if bundle.predict is None:
        raise ConfigError(f"task {recipe.get('task')!r} has no prediction writer")
    dataset = bundle.val_set if split == "val" else bundle.train_set
    if dataset is None:
        raise ConfigError(f"task {recipe.get('task')!r} has no {split} split")
    try:
        path = bundle.predict(bundle.model, dataset, out)
    except PermissionError as exc:
        raise ConfigError(f"--out {out}: cannot write: {exc.strerror}") from exc
    # "val" is the split the run evaluated on, which a recipe's data.eval_split may set to test.
    which = "evaluation-split" if split == "val" else "training"
    Console().print(f"predictions of {len(cast(Sized, dataset))} {which} samples with {directory}: {path}")
