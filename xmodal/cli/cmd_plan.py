"""``xmodal plan DATA [--target COLUMN] [--json] [--recipe-out FILE]``: the model xmodal would train on DATA,
with the reason for each choice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plan(
    data: Annotated[Path, typer.Argument(help="a folder of class folders, a folder of stem-paired files with "
                                         "labels.csv, or a CSV/JSONL/Parquet table")],
    target: Annotated[str | None, typer.Option("--target", help="the column to predict (omit for contrastive "
                                               "retrieval between modality columns)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    recipe_out: Annotated[Path | None, typer.Option("--recipe-out", help="also write the plan as a recipe of the "
                                                    "multimodal task (task, data, model, eval)")] = None,
    sample: Annotated[int, typer.Option("--sample", help="files decoded per column (evenly spread; every "
                                        "path is checked for existence)")] = 32,
) -> None:
    """Infer each column's modality from its content and print the task, encoders, fusion, head and metric."""
    import json

    from xmodal.automl import describe, make_plan

    p = make_plan(data, target, sample)
    if recipe_out is not None:
        from xmodal.automl.recipe import write_recipe

        write_recipe(p, recipe_out)
    if json_out:
        typer.echo(json.dumps(p.to_json(), indent=2))
    else:
        typer.echo(describe(p))
