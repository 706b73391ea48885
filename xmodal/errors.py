"""Typed errors. Each names the file, field or tensor at fault and says what was expected.

Every error derives from :class:`XmodalError`, and also from the builtin a caller would naturally catch
(``ValueError`` for bad values, ``FileNotFoundError`` for missing files, ``ImportError`` for missing extras),
so ``except ValueError`` keeps working in code that does not know xmodal.
"""

from __future__ import annotations

from pathlib import Path


class XmodalError(Exception):
    """Base class of every error xmodal raises on purpose."""


def _where(source: str | Path | None) -> str:
    return f"{source}: " if source is not None else ""


class DataError(XmodalError, ValueError):
    """Input data is not what it should be. ``source`` is the file, field or tensor at fault."""

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        self.source = None if source is None else str(source)
        super().__init__(_where(source) + message)


class CorruptFileError(DataError):
    """A file exists but cannot be decoded (truncated, wrong format, bad header)."""


class EmptyInputError(DataError):
    """Something that must hold content is empty: a caption, a MIDI file with no notes, a silent signal."""


class SampleRateError(DataError):
    """A signal has a sample rate the caller did not expect or a metric does not support."""


class ShapeError(DataError):
    """A tensor or array has the wrong shape, or two inputs that must match do not."""


class NonFiniteError(DataError):
    """A tensor holds NaN or infinity."""


class MissingFileError(XmodalError, FileNotFoundError):
    """A file or folder that the input names does not exist. ``source`` is the path (or the option naming it)."""

    def __init__(self, message: str, source: str | Path | None = None) -> None:
        self.source = None if source is None else str(source)
        super().__init__(_where(source) + message)

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class MissingModalityError(DataError, KeyError):
    """A sample lacks a modality that the model or task needs."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return ValueError.__str__(self)


class MetricInputError(DataError):
    """Inputs to a metric are inconsistent: an id on one side only, a non-string caption, an empty list."""


class ConfigError(XmodalError, ValueError):
    """A recipe or option is invalid. The message names the key."""


class MissingWeightsError(XmodalError, FileNotFoundError):
    """Pretrained weights are needed but not on disk. The message names the file and where to get it."""


class ChecksumError(XmodalError, ValueError):
    """A file's sha256 differs from the one expected."""


class ExternalToolError(XmodalError, RuntimeError):
    """An external program (the METEOR or SPICE jar, fluidsynth) failed; the message carries its stderr."""


class MissingDependencyError(XmodalError, ImportError):
    """An optional package or program is needed. The message says what to install."""


def require_module(module: str, extra: str | None = None, package: str | None = None):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip package or xmodal extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'xmodal[{extra}]'" if extra else f"pip install {package or module}"
        raise MissingDependencyError(f"{module} is needed here: {hint}") from exc
