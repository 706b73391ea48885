"""The generic multimodal task: a recipe of data (a manifest or a table), a ``model:`` plan and a task kind,
with no task code of its own.

    task: multimodal
    data:  {table: pets.csv, fields: {photo: image, age: numeric, breed: categorical}, target: adopted,
            kind: classification}
    model: {encoders: {photo: default, age: default, breed: default}, fusion: {kind: gated},
            head: {kind: classifier}}

Encoders default to every field's spec default; sizes the data decides (numeric input sizes, the categories of
a categorical field, the number of classes) are filled in from the training data unless the plan sets them.
``kind: classification`` (head ``classifier``, cross-entropy, accuracy), ``multilabel`` (delimited label sets,
head ``classifier`` trained with BCE, mean average precision), ``regression`` (head ``regression``, MSE, RMSE)
or ``contrastive`` (no head; every ordered pair of fields scored by retrieval). The label names are a
task artifact (``labels.json`` in the run directory), reused as saved when a run is loaded again.

``data: {shards: DIR, val_shards: DIR}`` reads folders written by ``xmodal data shard`` instead: the training
folder is streamed (``xmodal/tasks/shard_source.py``; the trainer's side is ``xmodal/train/streaming.py``); every
kind reads from shards, its labels handled as a table's are (a multilabel label set, the same multi-hot vector).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle


@dataclass
class DataConfig:
    manifest: str | None = None  # a dataset directory (dataset.json + manifest.jsonl)
    table: str | None = None  # a .csv or .jsonl table; file cells are paths relative to it
    shards: str | None = None  # a shard folder (``xmodal data shard``), streamed: xmodal/tasks/shard_source.py
    val_shards: str | None = None  # with ``shards``: the shard folder evaluated on (read into memory)
    shuffle: bool = True  # with ``shards``: a new shard order (and order within shards) every epoch
    fields: dict[str, Any] = field(default_factory=dict)  # {field: modality}; manifest default: all its fields
    target: str = "label"
    kind: Literal["classification", "multilabel", "regression", "contrastive"] = "classification"
    label_delimiter: str | None = None  # multilabel label sets ("cat|dog"); null: the first of | ; , found
    val_split: str = "test"  # the split evaluated on, when the data has splits
    val_fraction: float = 0.2  # otherwise: this fraction of each class, drawn with ``seed``
    seed: int = 0
    image_size: list[int] = field(default_factory=lambda: [64, 64])  # images are resized to (H, W)
    sample_rate: int = 16000  # audio is resampled to this rate
    # file cells naming paths outside the table's (or dataset's) folder are refused unless this is set; the
    # tables that ``xmodal plan`` / ``fit`` write beside their recipe point at the data folder, and set it
    allow_outside: bool = False


def _data(cfg: dict[str, Any]) -> DataConfig:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    if not 0.0 < d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
    if len(d.image_size) != 2 or min(d.image_size) < 1:
        raise ConfigError(f"data.image_size: expected [height, width], got {d.image_size}")
    for name, modality in d.fields.items():
        if not isinstance(modality, str):
            raise ConfigError(f"data.fields.{name}: expected a modality name, got {modality!r}")
    return d


def _plan(cfg: dict[str, Any], fields: dict[str, str], kind: str, sizes: dict[str, dict[str, int]],
          classes: int | None) -> dict[str, Any]:
    plan = copy.deepcopy(cfg.get("model") or {})
    encoders = plan.setdefault("encoders", {f: "default" for f in fields})
    for name in list(encoders):
        entry = encoders[name]
        entry = {} if entry in (None, "default") else ({"family": entry} if isinstance(entry, str) else dict(entry))
        entry.setdefault("modality", fields.get(name, name))
        for key, value in sizes.get(name, {}).items():
            entry.setdefault(key, value)
        encoders[name] = entry
    if kind in ("classification", "multilabel"):
        head = plan.setdefault("head", {"kind": "classifier"})
        if isinstance(head, dict) and head.get("kind", "classifier") == "classifier":
            head.setdefault("classes", classes or 2)
    elif kind == "regression":
        plan.setdefault("head", {"kind": "regression"})
    return plan


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and the ``model:`` plan at parse time (data-decided sizes are filled with placeholders)."""
    from xmodal.models import check_plan

    d = _data(cfg)
    if sum(x is not None for x in (d.manifest, d.table, d.shards)) != 1:
        raise ConfigError("data.manifest / data.table / data.shards: give exactly one of them")
    if d.val_shards is not None and d.shards is None:
        raise ConfigError("data.val_shards: only with data.shards")
    fields = {k: str(v) for k, v in d.fields.items()}
    if not fields and not (cfg.get("model") or {}).get("encoders"):
        return  # a manifest's fields are read from its dataset.json when the task is built
    check_plan(_plan(cfg, fields, d.kind, {}, 2))


def build(cfg: dict[str, Any], artifacts: dict[str, Any] | None = None) -> TaskBundle:
    """The TaskBundle of the recipe: source, transforms, model from the plan, objective, metrics, writer.

    ``artifacts``: those a trained run saved; its label names and categories are used as saved."""
    from xmodal.models import build_model
    from xmodal.tasks.sources import build_source, sizes_from_data

    d = _data(cfg)
    if d.shards is not None:
        from xmodal.tasks import shard_source

        return shard_source.build(cfg, d, artifacts)
    plan_encoders = (cfg.get("model") or {}).get("encoders") or {}
    families = {f: (e if isinstance(e, str) and e != "default" else (e or {}).get("family") if isinstance(e, dict)
                    else None) for f, e in plan_encoders.items()}
    source = build_source(manifest=d.manifest, table=d.table, fields={k: str(v) for k, v in d.fields.items()},
                          target=d.target, kind=d.kind, val_split=d.val_split, val_fraction=d.val_fraction,
                          seed=d.seed, families=families,
                          meta={"image_size": d.image_size, "sample_rate": d.sample_rate},
                          delimiter=d.label_delimiter, allow_outside=d.allow_outside,
                          saved_labels=(artifacts or {}).get("labels"),
                          saved_vocabularies=(artifacts or {}).get("categories"))
    sizes = sizes_from_data(source.train, source.modalities, source.vocabularies)
    classes = len(source.labels) if source.labels else None
    model = build_model(_plan(cfg, source.modalities, d.kind, sizes, classes))
    saved: dict[str, Any] = {"fields": source.modalities}  # this run's artifacts (``artifacts``: a former run's)
    if source.labels:
        saved["labels"] = source.labels
    if source.vocabularies:
        saved["categories"] = source.vocabularies
    return pipeline.assemble(kind=d.kind, model=model, modalities=source.modalities, train_set=source.train,
                             val_set=source.val, target=d.target, classes=classes, label_names=source.labels,
                             split=source.split, artifacts=saved,
                             batch_size=pipeline.eval_batch_size(cfg))
