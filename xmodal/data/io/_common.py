"""Shared helpers of the readers: every decoding failure becomes a CorruptFileError naming the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xmodal.errors import CorruptFileError, DataError

PathLike = str | Path


def existing(path: PathLike) -> Path:
    """``path`` as a Path; FileNotFoundError naming it when absent (a missing file is not a corrupt one)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    return p


@contextmanager
def decoding(path: PathLike, what: str) -> Iterator[None]:
    """Turn any exception raised while decoding ``path`` into CorruptFileError; typed data errors pass."""
    try:
        yield
    except (DataError, FileNotFoundError):
        raise
    except Exception as exc:  # decoders raise many unrelated types (RuntimeError, EOFError, av.error...)
        raise CorruptFileError(f"cannot decode {what}: {type(exc).__name__}: {exc}", source=path) from exc
