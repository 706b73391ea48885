"""Media stored inside a table cell: raw ``bytes``, or a ``{"bytes": ..., "path": ...}`` record (the layout
Hugging Face datasets write to Parquet for images and audio). Every reader takes paths, so such a cell is
written to a temporary file (named with the record's suffix, if any) for the length of one decode."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def inline_bytes(value: Any) -> tuple[bytes, str] | None:
    """``(content, suffix)`` of a cell that holds media bytes, else None."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), ""
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"]), Path(str(value.get("path") or "")).suffix
    return None


@contextmanager
def as_file(content: bytes, suffix: str = "", name: str = "cell") -> Iterator[Path]:
    """A temporary file holding ``content``, removed afterwards."""
    fd, tmp = tempfile.mkstemp(prefix=f"xmodal-{name}-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        yield Path(tmp)
    finally:
        os.unlink(tmp)
