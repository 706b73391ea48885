"""Placeholder for `xmodal demo`; the foundation issue fills it in."""

from __future__ import annotations


def demo() -> None:
    """Not implemented yet."""
    raise NotImplementedError("xmodal demo")
