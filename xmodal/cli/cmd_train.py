"""Placeholder for `xmodal train`; the foundation issue fills it in."""

from __future__ import annotations


def train() -> None:
    """Not implemented yet."""
    raise NotImplementedError("xmodal train")
