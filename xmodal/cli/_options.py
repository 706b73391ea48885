"""Checks shared by the ``xmodal eval`` commands: option values and the ``--out`` file, as typed errors that
name the option (the CLI maps them to exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xmodal.errors import ConfigError


def metric_list(spec: str, choices: tuple[str, ...] | None = None, flag: str = "--metrics") -> list[str]:
    """Comma-separated names, blanks dropped; ConfigError when nothing is left (``--metrics ,``) or, given
    ``choices``, for a name outside them."""
    names = [m.strip() for m in spec.split(",") if m.strip()]
    if not names:
        raise ConfigError(f"{flag} names no metric (got {spec!r})")
    unknown = [m for m in names if choices is not None and m not in choices]
    if unknown:
        raise ConfigError(f"{flag}: unknown metric(s) {unknown}; choose from {', '.join(choices or ())}")
    return names


def positive_workers(workers: int | None, flag: str = "--workers") -> int | None:
    """``None`` (the default: every CPU) or a count of at least 1."""
    if workers is not None and workers < 1:
        raise ConfigError(f"{flag} must be at least 1, got {workers}")
    return workers


def write_json(result: Any, out: Path | None, flag: str = "--out") -> str:
    """``result`` as indented, strictly valid JSON (NaN and infinity become null); also written to ``out``
    when given. A folder, a read-only place or a missing parent is a ConfigError naming ``out``."""
    text = json.dumps(_finite(result), indent=2, allow_nan=False)
    if out is not None:
        if out.is_dir():
            raise ConfigError(f"{flag} {out} is a directory; give a file name")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{flag} {out}: cannot write ({exc.strerror or exc})") from exc
    return text


def _finite(value: Any) -> Any:
    """A copy with float NaN/inf replaced by None: ``json.dumps`` would write the invalid tokens NaN."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
