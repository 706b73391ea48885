"""Strict readers for recipes and JSON inputs: UTF-8 only, and a key given twice in one mapping is an error
naming the key and its line (PyYAML and ``json`` silently keep the last value). Every module that reads
JSON or UTF-8 text input uses these."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from xmodal.errors import ConfigError, CorruptFileError, DataError, MissingFileError


def read_utf8(path: Path, error: type[ConfigError] | type[DataError] = ConfigError) -> str:
    """The text of ``path``; ``error`` names the file and the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        if issubclass(error, DataError):  # it names the file itself
            raise error(message.split(": ", 1)[1], source=path) from None
        raise error(message) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(f"{loader.name}: line {line}: duplicate key {key!r} (first given on line {seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML ``text`` (from ``source``) with duplicate keys refused; syntax errors name the line."""
    loader = _StrictLoader(text)
    loader.name = str(source)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def loads_json(text: str, source: str | Path, line: int | None = None) -> Any:
    """Parse JSON ``text`` with duplicate keys refused: CorruptFileError naming ``source``, the line (``line``
    when the text is one line of a JSON-lines file) and the key."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                at = line if line is not None else _line_of_second(text, key)
                raise CorruptFileError(f"line {at}: duplicate key {key!r} (given twice in one object)",
                                       source=source)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        at = line if line is not None else exc.lineno
        raise CorruptFileError(f"line {at}: invalid JSON: {exc.msg} (column {exc.colno})", source=source) from exc


def _line_of_second(text: str, key: str) -> int:
    """Line of the second ``"key":`` in ``text`` (object_pairs_hook has no positions)."""
    hits = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    pos = hits[1] if len(hits) > 1 else (hits[0] if hits else 0)
    return text.count("\n", 0, pos) + 1


def read_text(path: str | Path, what: str = "text") -> str:
    """An input file's UTF-8 text: MissingFileError when it is absent, CorruptFileError naming the line of the
    first byte that is not UTF-8."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} file not found", p)
    return read_utf8(p, CorruptFileError)


def read_json(path: str | Path) -> Any:
    """A UTF-8 JSON file, parsed by :func:`loads_json` (duplicate keys refused)."""
    return loads_json(read_text(path, "JSON"), Path(path))
