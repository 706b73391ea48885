"""Read the three layouts ``xmodal plan`` accepts into one :class:`Table` of columns.

1. a folder of class subfolders (``cats/a.png``, ``dogs/b.png``): a ``label`` column and one column per kind of
   file (files that share a stem inside a class folder form one row);
2. a folder of stem-paired files (``x.png``, ``x.wav``, ``x.txt``) with a ``labels.csv`` whose key column holds
   the stems: one column per file suffix plus the csv's columns;
3. a CSV / JSONL / Parquet table whose cells are paths (relative to the table), text, numbers or categories.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xmodal.config.loaders import loads_json
from xmodal.errors import ConfigError, CorruptFileError, EmptyInputError, MissingDependencyError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet")
KEY_NAMES = ("stem", "id", "name", "file", "key", "sample")


@dataclass
class Table:
    """``columns``: name -> one value per row (None where missing); relative paths resolve against ``root``."""

    columns: dict[str, list[Any]]
    root: Path
    layout: str  # "class_folders" | "paired_files" | "table" | "manifest"
    source: Path
    default_target: str | None = None
    declared: dict[str, str] | None = None  # modalities a dataset.json declares, compared with the content

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_"))


def _column_name(suffix: str) -> str:
    return suffix.lstrip(".").lower() or "file"


def _group_by_stem(files: list[Path], base: Path) -> dict[str, dict[str, Path]]:
    """{stem relative to ``base``: {column (suffix): path}}."""
    rows: dict[str, dict[str, Path]] = defaultdict(dict)
    for f in files:
        stem = str(f.relative_to(base).with_suffix(""))
        rows[stem][_column_name(f.suffix)] = f
    return rows


def _class_folders(root: Path, classes: list[Path]) -> Table:
    columns: dict[str, list[Any]] = defaultdict(list)
    labels: list[str] = []
    kinds = sorted({_column_name(f.suffix) for c in classes for f in c.rglob("*") if f.is_file() and _visible(f)})
    for c in classes:
        files = sorted(f for f in c.rglob("*") if f.is_file() and _visible(f))
        if not files:  # a class with no examples is a mistake to report, not a class to drop quietly
            raise EmptyInputError(f"class folder {c.name!r} holds no files", source=c)
        for _stem, group in sorted(_group_by_stem(files, c).items()):
            labels.append(c.name)
            for k in kinds:
                columns[k].append(str(group[k].relative_to(root)) if k in group else None)
    if not labels:
        raise EmptyInputError("class folders hold no files", source=root)
    if len(kinds) == 1:  # one kind of file: call the column what it is, a file
        columns = {"file": columns[kinds[0]]}
    return Table({**columns, "label": labels}, root, "class_folders", root, default_target="label")


def _read_csv(path: Path) -> dict[str, list[Any]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        sample = fh.read(8192)
        fh.seek(0)
        delimiter = "\t" if path.suffix.lower() == ".tsv" or ("\t" in sample and "," not in sample) else ","
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise EmptyInputError("table has no header row", source=path)
        names = [n.strip() for n in reader.fieldnames]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise CorruptFileError(f"duplicate column name(s) {dup}", source=path)
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for i, row in enumerate(reader, start=2):
            if None in row:
                raise CorruptFileError(f"line {i} has more cells than the header", source=path)
            for raw, n in zip(reader.fieldnames, names):
                v = row.get(raw)
                columns[n].append(None if v is None or v.strip() == "" else v)
    return columns


def _read_jsonl(path: Path) -> dict[str, list[Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = loads_json(line, path, line=i)
        if not isinstance(row, dict):
            raise CorruptFileError(f"line {i}: expected a JSON object", source=path)
        rows.append(row)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {n: [r.get(n) if r.get(n) != "" else None for r in rows] for n in names}


def _read_parquet(path: Path) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("Parquet tables need pyarrow: pip install 'xmodal[data]'") from exc
    try:
        return pq.read_table(path).to_pydict()
    except Exception as exc:  # arrow raises many types for a bad file
        raise CorruptFileError(f"cannot read Parquet: {exc}", source=path) from exc


def read_table(path: str | Path) -> Table:
    """A CSV / TSV / JSONL / Parquet file as a :class:`Table` rooted at its folder."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        columns = _read_csv(p)
    elif suffix in (".jsonl", ".ndjson"):
        columns = _read_jsonl(p)
    elif suffix == ".parquet":
        columns = _read_parquet(p)
    else:
        raise ConfigError(f"{p}: unknown table format {suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")
    if not columns or not any(columns.values()):
        raise EmptyInputError("table holds no rows", source=p)
    return Table(columns, p.parent, "table", p)


def _paired_files(root: Path, labels_csv: Path) -> Table:
    labels = _read_csv(labels_csv)
    files = sorted(f for f in root.iterdir() if f.is_file() and _visible(f) and f != labels_csv)
    groups = _group_by_stem(files, root)
    if not groups:
        raise EmptyInputError("folder holds labels.csv but no data files", source=root)
    key = next((k for k in labels if k.lower() in KEY_NAMES), None)
    if key is None:  # else the column whose values are the stems
        key = next((k for k, v in labels.items() if sum(str(x) in groups for x in v if x) > len(v) // 2), None)
    if key is None:
        raise ConfigError(f"{labels_csv}: no column names the file stems (expected one of {KEY_NAMES}, or a "
                          f"column whose values are stems such as {sorted(groups)[:3]})")
    stems = [str(Path(str(s)).with_suffix("")) if s else None for s in labels[key]]
    kinds = sorted({k for g in groups.values() for k in g})
    columns = {k: [str(groups[s][k].name) if s in groups and k in groups[s] else None for s in stems]
               for k in kinds}
    unlisted = sorted(set(groups) - set(stems))
    if unlisted:
        raise CorruptFileError(f"{len(unlisted)} file stem(s) have no row in labels.csv (first: "
                               f"{unlisted[:5]}); add them or move them away", source=labels_csv)
    return Table({**columns, **labels}, root, "paired_files", root)


def _manifest(root: Path) -> Table:
    """An xmodal dataset directory: its fields, ids and labels as columns (the split column is left out; the
    content decides the modalities, and a declared one that differs is reported)."""
    from xmodal.data.manifest import read_manifest

    meta, rows = read_manifest(root)
    if not rows:
        raise EmptyInputError("manifest holds no rows", source=root)
    names = list(dict.fromkeys(k for r in rows for k in r if k != "split"))
    columns = {n: [r.get(n) for r in rows] for n in names}
    return Table(columns, root, "manifest", root, default_target="label" if "label" in columns else None,
                 declared=dict(meta["modalities"]))


def load_data(data: str | Path) -> Table:
    """DATA of ``xmodal plan``: a table file, an xmodal dataset directory (dataset.json + manifest.jsonl), a
    folder with ``labels.csv``, or a folder of class folders."""
    from xmodal.data.manifest import MANIFEST_FILE, META_FILE

    p = Path(data)
    if p.is_file():
        return read_table(p)
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if (p / META_FILE).is_file() and (p / MANIFEST_FILE).is_file():
        return _manifest(p)
    entries = [e for e in p.iterdir() if _visible(e)]
    if not entries:
        raise EmptyInputError("folder is empty", source=p)
    labels_csv = p / "labels.csv"
    if labels_csv.is_file():
        return _paired_files(p, labels_csv)
    classes = sorted(e for e in entries if e.is_dir())
    if classes and len(classes) == len(entries):
        return _class_folders(p, classes)
    tables = [e for e in entries if e.suffix.lower() in TABLE_SUFFIXES]
    if len(tables) == 1:
        return read_table(tables[0])
    raise ConfigError(f"{p}: not a known layout: expected class subfolders only, stem-paired files with a "
                      "labels.csv, or one CSV/JSONL/Parquet table")
