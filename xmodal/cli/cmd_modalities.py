"""Placeholder for `xmodal modalities`; the foundation issue fills it in."""

from __future__ import annotations


def modalities() -> None:
    """Not implemented yet."""
    raise NotImplementedError("xmodal modalities")
