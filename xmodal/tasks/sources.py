"""Data sources of the generic pipeline: a manifest dataset directory or a table (CSV / JSON lines) of samples.

Both give datasets of sample dicts ``{"id", <field>: decoded and transformed value, "label"?}``. Decoding is
:func:`xmodal.data.manifest.decode_field` (paths relative to the dataset directory or the table's folder), and
every field then goes through its transform from :mod:`xmodal.tasks.fields`, the one swappable call site.
Nothing is skipped: a file that fails to decode raises its typed error naming the sample and field.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from xmodal.errors import ConfigError, DataError, MissingModalityError
from xmodal.modalities import get_modality


@dataclass
class Source:
    """Train and validation datasets, the fields' modalities, the label names (classification) and the
    categories of categorical fields."""

    train: Dataset
    val: Dataset
    modalities: dict[str, str]
    labels: list[str] | None
    vocabularies: dict[str, list[str]]
    split: str


class Samples(Dataset):
    """Rows ``{"id", field: raw value, target: raw label}`` decoded and transformed on access."""

    def __init__(self, rows: list[dict[str, Any]], root: Path, meta: Mapping[str, Any], modalities: Mapping[str, str],
                 transforms: Mapping[str, Callable[[Any], Any] | None], target: str | None,
                 label_index: Mapping[str, int] | None, regression: bool, delimiter: str | None = None,
                 allow_outside: bool = False) -> None:
        self.rows, self.root, self.meta = rows, root, dict(meta)
        self.allow_outside = allow_outside  # file cells may name paths outside ``root`` (a trusted table)
        self.specs = {f: get_modality(m) for f, m in modalities.items()}
        self.transforms, self.target = dict(transforms), target
        self.label_index, self.regression, self.delimiter = label_index, regression, delimiter

    def __len__(self) -> int:
        return len(self.rows)

    def label(self, row: Mapping[str, Any]) -> Any:
        sid = str(row["id"])
        if self.target is None:
            return None
        value = row.get(self.target)
        if value is None or value == "":
            raise MissingModalityError(f"sample {sid!r} has no target {self.target!r}", source=f"{sid}/{self.target}")
        if self.regression:
            try:
                return float(value)
            except (TypeError, ValueError):
                raise DataError(f"target {self.target!r} of sample {sid!r} is not a number: {value!r}",
                                source=f"{sid}/{self.target}") from None
        assert self.label_index is not None
        if self.delimiter is not None:  # multilabel: a multi-hot vector over the training labels
            return multi_hot(value, self.delimiter, self.label_index, f"sample {sid!r}", "training",
                             f"{sid}/{self.target}")
        return self.label_index[str(value)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        from xmodal.data.manifest import decode_field

        row = self.rows[index]
        sid = str(row["id"])
        sample: dict[str, Any] = {"id": sid}
        for field, spec in self.specs.items():
            value = row.get(field)
            if value is None or value == "":
                raise MissingModalityError(f"sample {sid!r} lacks field {field!r} ({spec.name})",
                                           source=f"{sid}/{field}")
            if spec.family != "tabular":
                value = decode_field(self.root, self.meta, spec, value, allow_outside=self.allow_outside)
            transform = self.transforms.get(field)
            sample[field] = transform(value) if transform is not None else value
        if self.target is not None:
            sample[self.target] = self.label(row)
        return sample


def split_labels(value: Any, delimiter: str) -> list[str]:
    """The labels of a delimited label set (``"cat|dog"``), stripped, empty parts dropped."""
    return [p.strip() for p in str(value).split(delimiter) if p.strip()]


def multi_hot(value: Any, delimiter: str, label_index: Mapping[str, int], who: str, seen_in: str,
              source: str) -> torch.Tensor:
    """The multi-hot vector of a delimited label set over ``label_index``; a label outside it raises, naming
    ``who`` (the sample) and ``seen_in`` (where the labels were collected)."""
    hot = torch.zeros(len(label_index))
    for part in split_labels(value, delimiter):
        if part not in label_index:
            raise DataError(f"{who}: label {part!r} never occurs in {seen_in}", source=source)
        hot[label_index[part]] = 1.0
    return hot


def label_delimiter(values: list[Any]) -> str:
    """The first of ``|``, ``;`` and ``,`` that occurs in the label sets (``|`` when none does)."""
    for d in ("|", ";", ","):
        if any(d in str(v) for v in values):
            return d
    return "|"


def _vocabularies(rows: list[dict[str, Any]], modalities: Mapping[str, str]) -> dict[str, list[str]]:
    return {f: sorted({str(r[f]) for r in rows if r.get(f) not in (None, "")})
            for f, m in modalities.items() if get_modality(m).name == "categorical"}


def _numeric_cell(value: Any, field: str, sid: str) -> list[float]:
    cells = value if isinstance(value, list) else str(value).split(";")
    try:
        return [float(c) for c in cells]
    except ValueError:
        raise DataError(f"sample {sid!r}, field {field!r}: not a number: {value!r}", source=f"{sid}/{field}") from None


def _split_rows(rows: list[dict[str, Any]], target: str | None, fraction: float, seed: int,
                stratify: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A held-out split fixed by ``seed``: ``fraction`` of every class (or of all rows) goes to validation."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get(target)) if stratify and target else "", []).append(r)
    rng = random.Random(seed)
    train, val = [], []
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        n_val = round(len(members) * fraction)
        if stratify and len(members) > 1:
            n_val = min(max(n_val, 1), len(members) - 1)
        val += members[:n_val]
        train += members[n_val:]
    return train, val


def build_source(*, manifest: str | None, table: str | None, fields: Mapping[str, str], target: str | None,
                 kind: str, val_split: str, val_fraction: float, seed: int, families: Mapping[str, str | None],
                 meta: Mapping[str, Any] | None = None, delimiter: str | None = None,
                 allow_outside: bool = False, saved_labels: list[str] | None = None,
                 saved_vocabularies: Mapping[str, list[str]] | None = None) -> Source:
    """The source a recipe's ``data:`` names (exactly one of ``manifest`` and ``table``).

    ``saved_labels`` / ``saved_vocabularies``: the label names and categories a trained run saved, used as they
    are instead of being derived from the rows (a label or category the run never saw is a DataError)."""
    from xmodal.tasks.fields import field_transform

    if (manifest is None) == (table is None):
        raise ConfigError("data.manifest / data.table: give exactly one of them")
    if manifest is not None:
        from xmodal.data.manifest import read_manifest

        root = Path(manifest)
        meta_, rows = read_manifest(root)
        meta = {**meta_, **dict(meta or {})}
        modalities = dict(fields) or {f: m for f, m in meta_["modalities"].items() if f != target}
        if target is not None and kind != "contrastive":
            for r in rows:
                r.setdefault(target, r.get("label"))
        train_rows = [r for r in rows if r.get("split") == "train"]
        val_rows = [r for r in rows if r.get("split") == val_split]
        split = val_split
    else:
        path = Path(table)  # type: ignore[arg-type]
        if not path.is_file():
            raise ConfigError(f"data.table: {path} does not exist")
        root = path.parent
        rows = _read_table(path)
        if not fields:
            raise ConfigError("data.fields: a table needs {column: modality} for its input columns")
        modalities = dict(fields)
        for f in modalities:
            if rows and f not in rows[0]:
                raise ConfigError(f"data.fields.{f}: no column {f!r} in {path}; columns: {', '.join(rows[0])}")
        if "split" in (rows[0] if rows else {}):
            train_rows = [r for r in rows if r["split"] == "train"]
            val_rows = [r for r in rows if r["split"] == val_split]
            split = val_split
        else:
            train_rows, val_rows = _split_rows(rows, target, val_fraction, seed, kind == "classification")
            split = "val"
        meta = dict(meta or {})
    for f, m in modalities.items():
        get_modality(m)  # UnknownModalityError names it
        if get_modality(m).name == "numeric":
            for r in rows:
                r[f] = _numeric_cell(r.get(f), f, str(r.get("id")))
    if target is not None and kind != "contrastive" and rows and target not in rows[0]:
        raise ConfigError(f"data.target: no column or field {target!r} in the data")
    if not train_rows or not val_rows:
        raise ConfigError(f"data: {len(train_rows)} training and {len(val_rows)} validation samples; both "
                          "splits need samples")
    labels = None
    label_index = None
    if saved_labels is not None and kind in ("classification", "multilabel") and target is not None:
        labels = [str(n) for n in saved_labels]
        label_index = {name: i for i, name in enumerate(labels)}
        if kind == "multilabel":
            delimiter = delimiter or label_delimiter([r.get(target) for r in train_rows])
        else:
            unknown = sorted({str(r[target]) for r in train_rows + val_rows} - set(labels))
            if unknown:
                raise DataError(f"data.target: labels {unknown} are not among the {len(labels)} the trained run "
                                "saved (labels.json): the data changed since training", source=target)
    elif kind == "multilabel" and target is not None:
        delimiter = delimiter or label_delimiter([r.get(target) for r in train_rows])
        labels = sorted({p for r in train_rows for p in split_labels(r.get(target), delimiter)})
        if len(labels) < 2:
            raise ConfigError(f"data.target: {target!r} has {len(labels)} label in training; at least 2 are needed")
        label_index = {name: i for i, name in enumerate(labels)}
    elif kind == "classification" and target is not None:
        labels = sorted({str(r[target]) for r in train_rows})
        if len(labels) < 2:
            raise ConfigError(f"data.target: {target!r} has {len(labels)} class in training; at least 2 are needed")
        unseen = sorted({str(r[target]) for r in val_rows} - set(labels))
        if unseen:
            raise ConfigError(f"data.target: validation labels {unseen} never occur in training")
        label_index = {name: i for i, name in enumerate(labels)}
    vocab = ({f: list(v) for f, v in saved_vocabularies.items()} if saved_vocabularies is not None
             else _vocabularies(train_rows + val_rows, modalities))
    transforms = {f: field_transform(f, get_modality(m), families.get(f), vocab) for f, m in modalities.items()}
    tgt = target if kind != "contrastive" else None

    def make(rs: list[dict[str, Any]]) -> Samples:
        return Samples(rs, root, meta, modalities, transforms, tgt, label_index,
                       kind == "regression", delimiter if kind == "multilabel" else None, allow_outside)

    return Source(make(train_rows), make(val_rows), modalities, labels, vocab, split)


def _read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header row) or JSON-lines table; ids from an ``id`` column, else the row number."""
    from xmodal.config.loaders import loads_json, read_utf8
    from xmodal.errors import CorruptFileError

    text = read_utf8(path, CorruptFileError)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [loads_json(line, path, line=n) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames and len(set(reader.fieldnames)) != len(reader.fieldnames):
            dup = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
            raise CorruptFileError(f"line 1: duplicate column {dup[0]!r}", source=path)
        rows = list(reader)
    else:
        raise ConfigError(f"data.table: {path}: expected a .csv or .jsonl table")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise CorruptFileError(f"row {i + 1}: expected an object", source=path)
        r.setdefault("id", str(i))
    return rows


def first_value(dataset: Dataset, field: str) -> Any:
    """The transformed value of ``field`` in the first sample (sizes the encoders from the data)."""
    return dataset[0][field]


def sizes_from_data(dataset: Dataset, modalities: Mapping[str, str], vocab: Mapping[str, list[str]]) -> dict[str, dict[str, int]]:
    """Encoder settings the data decides: input sizes of numeric and graph fields, categories of categorical."""
    out: dict[str, dict[str, int]] = {}
    for f, m in modalities.items():
        name = get_modality(m).name
        if name == "categorical":
            out[f] = {"num_categories": max(1, len(vocab.get(f, [])))}
        elif name == "numeric":
            out[f] = {"in_dim": int(torch.as_tensor(first_value(dataset, f)).numel())}
        elif name == "graph":
            out[f] = {"in_dim": int(first_value(dataset, f).x.shape[1])}
    return out
