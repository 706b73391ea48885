"""Shared helpers of the readers: every decoding failure becomes a CorruptFileError naming the file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xmodal.errors import CorruptFileError, DataError, EmptyInputError, MissingFileError

PathLike = str | Path


def existing(path: PathLike) -> Path:
    """``path`` as a Path; FileNotFoundError naming it when absent (a missing file is not a corrupt one)."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError("no such file", p)
    return p


@contextmanager
def decoding(path: PathLike, what: str) -> Iterator[None]:
    """Turn any exception raised while decoding ``path`` into CorruptFileError; typed data errors pass."""
    try:
        yield
    except (DataError, FileNotFoundError):
        raise
    except Exception as exc:  # decoders raise many unrelated types (RuntimeError, EOFError, av.error...)
        raise CorruptFileError(f"cannot decode {what}: {describe(exc)}", source=path) from exc


def describe(exc: BaseException) -> str:
    """``Type: message`` of a decoder's exception; a bare EOFError (mido on a truncated file) says so."""
    text = str(exc).strip()
    if not text and isinstance(exc, EOFError):
        text = "the file ends in the middle of its data (truncated)"
    return f"{type(exc).__name__}: {text or 'no message'}"


def list_files(folder: PathLike, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files under ``folder`` (recursive) whose suffix is in ``suffixes``, sorted; MissingFileError naming the
    folder when it is not a directory, EmptyInputError when it holds none. Other files are left out with a
    warning that counts them and names the first few."""
    root = Path(folder)
    if not root.is_dir():
        raise MissingFileError("is not a directory", source=root)
    found = sorted(p for p in root.rglob("*") if p.is_file())
    files = [p for p in found if p.suffix.lower() in suffixes]
    if not files:
        raise EmptyInputError(f"holds no {what} ({', '.join(suffixes)})", source=root)
    skipped = [p for p in found if p.suffix.lower() not in suffixes]
    if skipped:
        names = ", ".join(str(p.relative_to(root)) for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"{root}: skipped {len(skipped)} file(s) that are not {what}: {names}{more}", stacklevel=2
        )
    return files
