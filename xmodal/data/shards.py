"""WebDataset tar shards of transformed samples, for data that does not fit one process's memory.

Layout of ``DIR`` (the WebDataset convention: a sample is the run of tar members sharing a key, the part of
the member name before its first dot)::

    shard-000000.tar ...    members "<key>.json" ({"id", "label"}), "<key>.<field>.npy" (one tensor),
                            "<key>.<field>.<part>.npy" (a dict output: a graph's x and edge_index),
                            "<key>.<field>.txt" (text, stored as is: its tokenizer follows the text tower)
    index.json              {"format": "webdataset", "shards": [{"name", "samples"}], "fields": {field:
                            modality}, "transforms": {field: {"name", "params", "state"}}, "samples": N}

Tensors are stored as ``.npy`` and read back with ``allow_pickle=False`` (no pickle anywhere). Shards are
written with ``webdataset.TarWriter`` (plain POSIX tar), each to a temporary name and renamed when complete;
``index.json`` is written last, so a directory with an index is whole.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmodal.errors import ConfigError, DataError, require_module
from xmodal.modalities import get_modality

INDEX = "index.json"
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class ShardSource:
    """Rows to shard: ``rows`` of ``{"id", "label"?, field: value}``, each field's modality, the folder its
    relative paths resolve against, and the rows that fit data-dependent transforms (the training split)."""

    rows: list[dict[str, Any]]
    fields: dict[str, str]
    root: Path
    fit_rows: list[dict[str, Any]]


def source_from(path: str | Path, target: str | None = None, split: str | None = None) -> ShardSource:
    """A manifest dataset directory (dataset.json + manifest.jsonl) or anything ``xmodal plan`` reads.

    ``split`` keeps the manifest rows of that split only (a training and a validation folder); fitted
    transforms learn from the training split either way, so both folders are transformed alike."""
    from xmodal.data.manifest import META_FILE, read_manifest

    p = Path(path)
    if p.is_dir() and (p / META_FILE).is_file():
        meta, rows = read_manifest(p)
        fields = dict(meta["modalities"])
        fit = [r for r in rows if r.get("split") == "train"] or rows
        if split is not None:
            rows = [r for r in rows if r.get("split") == split]
            if not rows:
                raise ConfigError(f"--split {split!r}: no sample of {p} is in that split")
        return ShardSource(rows, fields, p, fit)
    if split is not None:
        raise ConfigError(f"--split {split!r}: only a manifest dataset directory has splits; {p} is not one")
    from xmodal.automl import infer_columns, load_data

    table = load_data(p)
    target = target or table.default_target
    if target is not None and target not in table.columns:
        raise ConfigError(f"--target {target!r} is not a column of {p}; columns: {', '.join(table.columns)}")
    types = infer_columns(table, target)
    fields = {c: t.modality for c, t in types.items() if t.role == "input" and t.modality}
    ids = next((table.columns[c] for c, t in types.items() if t.role == "id"), None)
    rows = []
    for i in range(table.num_rows):
        row = {"id": str(ids[i]) if ids is not None else f"{i:08d}", **{f: table.columns[f][i] for f in fields}}
        if target is not None:
            row["label"] = table.columns[target][i]
        rows.append(row)
    return ShardSource(rows, fields, table.root, rows)


def _resolve(value: Any, modality: str, root: Path) -> Any:
    spec = get_modality(modality)
    if spec.is_text or spec.family == "tabular" or not isinstance(value, str):
        return value
    return root / value


def _npy(t: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    np.save(buf, t.detach().cpu().numpy(), allow_pickle=False)
    return buf.getvalue()


def _key(index: int, sid: str) -> str:
    return f"{index:08d}_{_KEY_CHARS.sub('_', sid)[:80]}"


def encode_sample(index: int, sample: Mapping[str, Any]) -> dict[str, Any]:
    """One sample as WebDataset members: ``{"__key__": key, "json": bytes, "<field>.npy": bytes, ...}``."""
    out: dict[str, Any] = {"__key__": _key(index, str(sample["id"]))}
    meta = {"id": str(sample["id"])}
    if sample.get("label") is not None:
        meta["label"] = sample["label"]
    out["json"] = json.dumps(meta).encode()
    for field, value in sample.items():
        if field in ("id", "label"):
            continue
        if "." in field:
            raise ConfigError(f"field name {field!r} holds a dot, which WebDataset keys cannot")
        if isinstance(value, str):
            out[f"{field}.txt"] = value.encode()
        elif isinstance(value, torch.Tensor):
            out[f"{field}.npy"] = _npy(value)
        elif isinstance(value, Mapping):
            for part, t in value.items():
                out[f"{field}.{part}.npy"] = _npy(t)
        else:
            raise DataError(f"cannot store a {type(value).__name__} in a shard", source=f"{sample['id']}/{field}")
    return out


def write_shards(source: ShardSource, out: str | Path, shard_size: int = 1000, cache=None,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Transform every row (text kept as text) and write shards of ``shard_size`` samples; returns the index.

    ``params`` overrides transform parameters per field; fitted transforms learn from ``source.fit_rows``.
    A row whose file cannot be decoded raises its typed error naming the file: nothing is skipped.
    """
    from xmodal.transforms import build_transforms, describe_transforms

    wds = require_module("webdataset", extra="data")
    if shard_size < 1:
        raise ConfigError(f"shard size must be >= 1, got {shard_size}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / INDEX).exists():
        raise ConfigError(f"{out} already holds shards ({INDEX}); choose an empty folder")
    fields = {f: m for f, m in source.fields.items() if not get_modality(m).is_text}
    transforms = build_transforms(fields, cache, params)
    for field, t in transforms.items():
        t.fit([r[field] for r in source.fit_rows if r.get(field) is not None])
    shards: list[dict[str, Any]] = []
    writer, count = None, 0
    try:
        for i, row in enumerate(source.rows):
            if writer is None or count == shard_size:
                if writer is not None:
                    writer.close()
                    _commit(out, shards[-1])
                shards.append({"name": f"shard-{len(shards):06d}.tar", "samples": 0})
                writer, count = wds.TarWriter(str(out / (shards[-1]["name"] + ".tmp")), encoder=False), 0
            sample = {"id": row["id"], "label": row.get("label")}
            for field, modality in source.fields.items():
                value = _resolve(row[field], modality, source.root)
                sample[field] = transforms[field](value) if field in transforms else str(value)
            writer.write(encode_sample(i, sample))
            count += 1
            shards[-1]["samples"] = count
        if writer is not None:
            writer.close()
            _commit(out, shards[-1])
    finally:
        for tmp in out.glob("*.tar.tmp"):
            tmp.unlink()
    index = {"format": "webdataset", "shards": shards, "samples": sum(s["samples"] for s in shards),
             "fields": source.fields,
             "transforms": describe_transforms(transforms)}
    tmp = out / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=1, default=str))
    os.replace(tmp, out / INDEX)
    return index


def _commit(out: Path, shard: Mapping[str, Any]) -> None:
    os.replace(out / (shard["name"] + ".tmp"), out / shard["name"])


def read_index(directory: str | Path) -> dict[str, Any]:
    p = Path(directory) / INDEX
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found; shards are written by `xmodal data shard`")
    return json.loads(p.read_text())


def iter_tar_samples(path: str | Path) -> Iterable[dict[str, Any]]:
    """Samples of one shard, in order: ``{"id", "label"?, field: tensor | dict of tensors | str}``."""
    import tarfile

    from xmodal.errors import CorruptFileError

    current: dict[str, Any] | None = None
    key = None
    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, _, ext = member.name.partition(".")
                if k != key:
                    if current is not None:
                        yield current
                    current, key = {}, k
                handle = tar.extractfile(member)
                assert handle is not None and current is not None  # a regular member always has a handle
                data = handle.read()
                _decode_member(current, ext, data)
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read shard: {exc}", source=path) from exc
    if current is not None:
        yield current


def iter_tar_meta(path: str | Path) -> Iterable[dict[str, Any]]:
    """The ``.json`` member (id, label) of every sample of one shard, in order, without decoding tensors."""
    import tarfile

    from xmodal.errors import CorruptFileError

    try:
        with tarfile.open(path, "r") as tar:
            for member in tar:
                if member.isfile() and member.name.partition(".")[2] == "json":
                    handle = tar.extractfile(member)
                    assert handle is not None  # a regular member always has a handle
                    yield json.loads(handle.read())
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read shard: {exc}", source=path) from exc


def _decode_member(sample: dict[str, Any], ext: str, data: bytes) -> None:
    if ext == "json":
        sample.update(json.loads(data))
        return
    parts = ext.split(".")
    if parts[-1] == "txt":
        sample[parts[0]] = data.decode()
        return
    t = torch.from_numpy(np.load(io.BytesIO(data), allow_pickle=False))
    if len(parts) == 2:
        sample[parts[0]] = t
    else:
        sample.setdefault(parts[0], {})[parts[1]] = t
