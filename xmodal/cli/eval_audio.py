"""Placeholder: commands are added here by the issue that owns this family of metrics."""

from __future__ import annotations

from xmodal.cli.eval import eval_app  # noqa: F401
