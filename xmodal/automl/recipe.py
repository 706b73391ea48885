"""``xmodal plan --recipe-out FILE``: the plan as a recipe of the generic multimodal task.

The training pipeline reads xmodal dataset directories and CSV/JSONL tables whose file cells are paths relative
to the table. A dataset directory, CSV or JSONL source is referenced as it is; any other layout (class folders, paired files, Parquet) is written beside
the recipe as ``<recipe>.table.jsonl`` with absolute paths, holding the input columns and the target.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xmodal.automl.plan import Plan
from xmodal.errors import ConfigError
from xmodal.modalities import get_modality
from xmodal.transforms.inline import inline_bytes


def _cell(value: Any, modality: str | None, root: Path, column: str) -> Any:
    if inline_bytes(value) is not None:
        raise ConfigError(f"column {column!r} holds media bytes inside the table; a recipe's table needs files: "
                          "write the media to files first")
    if modality is None:
        raise ConfigError(f"column {column!r} is an input of unknown modality; a recipe needs each input's")
    spec = get_modality(modality)
    if value is None or spec.is_text or spec.family == "tabular" or not isinstance(value, str):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else (root / p).resolve())


def write_recipe(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` as a YAML recipe at ``path`` (atomically), plus its table when the source is not one
    the pipeline reads; returns the recipe's path."""
    import yaml

    path = Path(path)
    table = plan.table
    if table is None:
        raise ConfigError("the plan holds no table to write a recipe for")
    source = Path(table.source)
    if table.layout == "manifest":  # the pipeline reads dataset directories (and their splits) directly
        _atomic_write(path, yaml.safe_dump(plan.to_recipe(manifest=str(source.resolve())), sort_keys=False))
        return path
    written = not (table.layout == "table" and source.suffix.lower() in (".csv", ".jsonl"))
    if not written:
        table_path = source.resolve()
    else:
        table_path = path.with_name(path.stem + ".table.jsonl").resolve()
        columns = [*plan.inputs, *([plan.target] if plan.target else [])]
        lines = []
        for i in range(table.num_rows):
            row = {c: (_cell(table.columns[c][i], plan.inputs[c].modality, table.root, c) if c in plan.inputs
                       else table.columns[c][i]) for c in columns}
            lines.append(json.dumps(row, ensure_ascii=False))
        _atomic_write(table_path, "\n".join(lines) + "\n")
    recipe = plan.to_recipe(str(table_path))
    if written:  # the table is ours, beside the recipe, and names the data folder's files by absolute path
        recipe["data"]["allow_outside"] = True
    _atomic_write(path, yaml.safe_dump(recipe, sort_keys=False))
    return path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
