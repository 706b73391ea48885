"""Helpers shared by the vision-language benchmark readers: JSON, JSON-lines and CSV files whose every defect
becomes a typed error naming the file and the line (or record) at fault."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from xmodal.config.loaders import loads_json
from xmodal.errors import CorruptFileError, DataError

PathLike = str | Path
T = TypeVar("T")


def existing(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return p


def read_text(path: PathLike) -> str:
    p = existing(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"is not UTF-8 text ({exc})", source=p) from exc


def load_json(path: PathLike) -> Any:
    """Parse a JSON file; a syntax error names the line and column, and a key repeated within one object is an
    error (``json`` would keep the last one silently)."""
    p = existing(path)
    return loads_json(read_text(p), p)


def dump_json(path: PathLike, obj: Any) -> None:
    """Write JSON as json.dump does by default (the separators of the official files), UTF-8."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    p = existing(path)
    for lineno, line in enumerate(read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        obj = loads_json(line, p, line=lineno)
        if not isinstance(obj, dict):
            raise DataError(f"line {lineno}: expected a JSON object, got {type(obj).__name__}", source=p)
        yield lineno, obj


def read_csv_rows(path: PathLike, header: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a comma-separated file whose first row must start with ``header``."""
    p = existing(path)
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            first = next(reader, None)
            if first is None:
                raise DataError(f"is empty; expected the header {','.join(header)}", source=p)
            first = [c.lstrip("\ufeff") if i == 0 else c for i, c in enumerate(first)]
            if first[: len(header)] != header:
                raise DataError(f"line 1: expected the header {','.join(header)}, got {','.join(first)}",
                                source=p)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(first):
                    raise DataError(f"line {reader.line_num}: expected {len(first)} fields, got {len(row)}",
                                    source=p)
                yield reader.line_num, dict(zip(first, row))
        except csv.Error as exc:
            raise CorruptFileError(f"line {reader.line_num}: {exc}", source=p) from exc
        except UnicodeDecodeError as exc:
            raise CorruptFileError(f"is not UTF-8 text ({exc})", source=p) from exc


def write_csv_rows(path: PathLike, header: list[str], rows: list[list[Any]]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def get(obj: Any, key: str, kind: type[T] | tuple[type, ...], where: str, source: PathLike) -> T:
    """``obj[key]`` checked to be of ``kind``; DataError naming ``source`` and ``where`` (record, line)."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object, got {type(obj).__name__}", source=source)
    if key not in obj:
        raise DataError(f"{where}: missing field {key!r}", source=source)
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass: never accept it where a number is asked for
    if isinstance(value, bool) and bool not in kinds:
        raise DataError(f"{where}: field {key!r} must be {_names(kinds)}, got a boolean", source=source)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value  # type: ignore[return-value]  # JSON integers are valid numbers
    if not isinstance(value, kinds):
        raise DataError(f"{where}: field {key!r} must be {_names(kinds)}, got {type(value).__name__}",
                        source=source)
    return value  # type: ignore[return-value]


def number_list(value: Any, length: int | None, what: str, where: str, source: PathLike) -> list[float]:
    """A list of finite JSON numbers (of ``length`` when given) or a DataError (Python's json reads NaN and
    Infinity, which no official file holds)."""
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                         and math.isfinite(v) for v in value)
    if not ok or (length is not None and len(value) != length):
        size = f"{length} " if length is not None else ""
        raise DataError(f"{where}: {what} must be a list of {size}numbers, got {value!r}", source=source)
    return [v for v in value]


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)
