"""The plan ``xmodal plan`` prints and ``xmodal fit`` trains: the task that follows from the target, one encoder
per input column (by its inferred modality), a fusion, a head and the primary metric.

The task follows from the target column: delimited labels -> multilabel; real numbers or many distinct
integers -> regression; two classes -> binary; more -> multiclass. With no target and at least two modality
columns, the plan is contrastive retrieval between them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmodal.automl.infer import SAMPLE, ColumnType, _is_number, infer_columns
from xmodal.automl.sources import Table, load_data
from xmodal.errors import ConfigError, DataError, EmptyInputError
from xmodal.modalities import get_modality

# Names of the training pipeline: its heads (a multilabel classifier is a classifier trained with BCE), its
# primary metrics ("mean/R@1": retrieval averaged over the ordered pairs of fields) and its data kinds.
METRICS = {"binary": "accuracy", "multiclass": "accuracy", "multilabel": "mean_average_precision",
           "regression": "rmse", "contrastive_retrieval": "mean/R@1"}
HEADS = {"binary": "classifier", "multiclass": "classifier", "multilabel": "classifier",
         "regression": "regression", "contrastive_retrieval": "projection"}
KINDS = {"binary": "classification", "multiclass": "classification", "multilabel": "multilabel",
         "regression": "regression", "contrastive_retrieval": "contrastive"}
_DELIMITERS = ("|", ";", ",")
MAX_REGRESSION_CLASSES = 20  # integer targets with more distinct values than this are regressed


class TargetError(DataError):
    """The target column is missing, constant or has a single class; the message names it."""


@dataclass
class Plan:
    """What would be trained. ``inputs``: the feature columns (ids and the target excluded)."""

    task: str
    target: str | None
    inputs: dict[str, ColumnType]
    fusion: str
    head: str
    metric: str
    task_reason: str
    classes: list[str] = field(default_factory=list)
    ignored: dict[str, ColumnType] = field(default_factory=dict)
    source: str = ""
    layout: str = ""
    rows: int = 0
    table: Table | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Exactly ``{"task", "target", "inputs": {column: {"modality", "encoder", "reason"}}, "fusion",
        "head", "metric"}``."""
        return {"task": self.task, "target": self.target,
                "inputs": {c: {"modality": t.modality, "encoder": t.encoder, "reason": t.reason}
                           for c, t in self.inputs.items()},
                "fusion": self.fusion, "head": self.head, "metric": self.metric}

    def to_recipe(self, table: str | None = None, manifest: str | None = None) -> dict[str, Any]:
        """The recipe of the generic multimodal task for ``table`` (a CSV/JSONL holding the input columns
        and the target) or ``manifest`` (an xmodal dataset directory): ``task``, ``data`` (table, fields, target, kind), the ``model`` plan that
        build_model reads (``encoders: {column: {modality, family}}, fusion, head``; no fusion and no head
        for contrastive retrieval), a default ``train`` section and ``eval.primary``."""
        model: dict[str, Any] = {"encoders": {c: {"modality": t.modality, "family": t.encoder}
                                              for c, t in self.inputs.items()}}
        if self.task != "contrastive_retrieval":
            model["fusion"] = {"kind": self.fusion}
            head: dict[str, Any] = {"kind": self.head}
            if self.head == "classifier":
                head["classes"] = len(self.classes)
            model["head"] = head
        if (table is None) == (manifest is None):
            raise ConfigError("a recipe reads one table or one manifest")
        data: dict[str, Any] = {"manifest": manifest} if manifest is not None else {"table": table}
        data.update({"fields": {c: t.modality for c, t in self.inputs.items()}, "kind": KINDS[self.task]})
        if self.target is not None:
            data["target"] = self.target
        # a starting point for training (`xmodal fit` sets its own budget): batches of 32, or of half the
        # training rows (80% of the table) when the table is small
        train = {"epochs": 10, "batch_size": max(1, min(32, self.rows * 4 // 5 // 2))}
        return {"task": "multimodal", "data": data, "model": model, "train": train,
                "eval": {"primary": self.metric}}


def _multilabel(values: list[str]) -> tuple[str, list[str]] | None:
    """(delimiter, labels) when the values are delimited label sets, else None."""
    for d in _DELIMITERS:
        with_d = [v for v in values if d in v]
        if len(with_d) < max(1, 0.2 * len(values)):
            continue
        parts = [p.strip() for v in values for p in v.split(d)]
        if all(p and len(p.split()) <= 3 for p in parts):
            return d, sorted(set(parts))
    return None


def infer_task(name: str | None, values: list[Any] | None, inputs: dict[str, ColumnType]) -> tuple[str, str,
                                                                                                   list[str]]:
    """(task, reason, classes) from the target's values."""
    if name is None:
        media = [c for c, t in inputs.items() if t.modality and get_family(t.modality) != "tabular"]
        if len(media) >= 2:
            why = (f"no target and {len(media)} modality columns ({', '.join(media)}): learn a shared space "
                   "and retrieve across them")
            return "contrastive_retrieval", why, []
        raise ConfigError("no --target given and fewer than two modality columns to align "
                          f"({', '.join(inputs) or 'none'}): name the column to predict with --target")
    assert values is not None
    cells = [v for v in values if v is not None and str(v).strip() != ""]
    if not cells:
        raise TargetError(f"target column {name!r} holds no values", source=name)
    missing = len(values) - len(cells)
    note = f"; {missing} rows without a target are left out of training and reported" if missing else ""
    strs = [str(v).strip() for v in cells]
    if not all(_is_number(v) for v in cells):
        ml = _multilabel(strs)
        if ml is not None:
            d, labels = ml
            if len(labels) < 2:
                raise TargetError(f"target column {name!r} has one label only ({labels[0]!r})", source=name)
            return "multilabel", f"{name!r} holds label sets delimited by {d!r}: {len(labels)} labels{note}", labels
    else:
        nums = [float(v) for v in cells]
        uniq = sorted(set(nums))
        if len(uniq) > 2 and (not all(v.is_integer() for v in nums) or len(uniq) > MAX_REGRESSION_CLASSES):
            kind = "real numbers" if not all(v.is_integer() for v in nums) else f"{len(uniq)} distinct integers"
            return "regression", f"{name!r} holds {kind} in [{uniq[0]:g}, {uniq[-1]:g}]{note}", []
    counts = Counter(strs)
    if len(counts) == 1:
        raise TargetError(f"target column {name!r} is constant: every row is {strs[0]!r} (one class, nothing to "
                          "learn)", source=name)
    classes = sorted(counts)
    rare = [c for c, k in counts.items() if k < 2]
    warn = f"; {len(rare)} class(es) with a single example ({', '.join(rare[:3])})" if rare else ""
    task = "binary" if len(classes) == 2 else "multiclass"
    shown = ", ".join(classes[:5]) + ("..." if len(classes) > 5 else "")
    return task, f"{name!r} holds {len(classes)} classes ({shown}){warn}{note}", classes


def get_family(modality: str) -> str:
    return get_modality(modality).family


def make_plan(data: str | Path | Table, target: str | None = None, sample: int = SAMPLE) -> Plan:
    """Infer column types (decoding at most ``sample`` files a column) and the task, and choose fusion, head
    and metric."""
    table = data if isinstance(data, Table) else load_data(data)
    if table.num_rows == 0:
        raise EmptyInputError("no rows", source=table.source)
    if target is None:
        target = table.default_target
    if target is not None and target not in table.columns:
        raise TargetError(f"target column {target!r} is not in {table.source}; columns: "
                          f"{', '.join(table.columns)}", source=target)
    if target is not None:  # a bad target fails before any file is decoded
        task, reason, classes = infer_task(target, table.columns[target], {})
    if sample < 1:
        raise ConfigError(f"sample must be >= 1 file per column, got {sample}")
    types = infer_columns(table, target, sample)
    for c, t in types.items():
        declared = (table.declared or {}).get(c)
        if declared and t.modality and get_modality(declared).name != t.modality:
            t.reason += f"; dataset.json declares {declared}, the content says {t.modality}"
    inputs = {c: t for c, t in types.items() if t.role == "input"}
    ignored = {c: t for c, t in types.items() if t.role == "id"}
    if not inputs:
        raise DataError(f"no input columns besides the target and ids ({', '.join(types)})", source=table.source)
    if target is None:
        task, reason, classes = infer_task(None, None, inputs)
    fusion = "none" if task == "contrastive_retrieval" else "concat"  # concat of one input is that input
    return Plan(task, target, inputs, fusion, HEADS[task], METRICS[task], reason, classes, ignored,
                str(table.source), table.layout, table.num_rows, table)


def describe(plan: Plan) -> str:
    """The plan as lines of text, with every reason."""
    lines = [f"data: {plan.source} ({plan.layout}, {plan.rows} rows)",
             f"task: {plan.task} -- {plan.task_reason}"]
    for c, t in plan.inputs.items():
        lines.append(f"  input {c!r}: {t.modality} -> {t.encoder} encoder -- {t.reason}")
    for c, t in plan.ignored.items():
        lines.append(f"  ignored {c!r}: {t.reason}")
    lines.append(f"fusion: {plan.fusion}; head: {plan.head}; metric: {plan.metric}")
    return "\n".join(re.sub(r"\s+$", "", ln) for ln in lines)
