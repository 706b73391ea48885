"""Text and JSON reading and atomic writing shared by the benchmark modules; failures name the file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from xmodal.config.loaders import loads_json
from xmodal.errors import CorruptFileError, DataError

PathLike = str | Path


def read_lines(path: PathLike) -> list[str]:
    """The lines of a UTF-8 text file without their line endings (``\\n`` or ``\\r\\n``) and without a BOM."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"not UTF-8 text ({exc})", p) from exc
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines  # (not splitlines: it also splits on \x85, \u2028)


def read_json(path: PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", p)
    try:
        text = p.read_text(encoding="utf-8-sig")  # released files may start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"not UTF-8 text ({exc})", p) from exc
    return loads_json(text, p)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 with ``\\n`` line endings, atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def parse_int(text: str, what: str, source: str) -> int:
    """``int(text)`` for a plain decimal integer; DataError naming ``source`` (file:line) otherwise."""
    t = text.strip()
    if not t.lstrip("-").isdigit():
        raise DataError(f"{what} must be an integer, got {text!r}", source)
    return int(t)
