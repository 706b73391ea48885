"""Running ``xmodal`` commands in-process from tests (typer's CliRunner) and reading what they print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from xmodal.cli import app

runner = CliRunner()


def eval_output(*args: str, catch_exceptions: bool = True) -> str:
    """Standard output of ``xmodal eval ARGS``, which must exit 0 (else the output and exception are shown)."""
    result = runner.invoke(app, ["eval", *args], catch_exceptions=catch_exceptions)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def eval_json(*args: str, catch_exceptions: bool = True) -> dict[str, Any]:
    """``xmodal eval ARGS``'s output, which must be exactly one JSON object."""
    return json.loads(eval_output(*args, catch_exceptions=catch_exceptions))


def first_json(text: str) -> dict[str, Any]:
    """The first JSON object in ``text`` (compact or indented), after any lines logged before it."""
    return json.JSONDecoder().raw_decode(text[text.index("{"):])[0]


def read_scenes(root: Path) -> dict[str, dict[str, Any]]:
    """A scene build's ``scenes.jsonl`` by scene id."""
    rows = [json.loads(line) for line in (root / "scenes.jsonl").read_text().splitlines()]
    return {r["id"]: r for r in rows}
