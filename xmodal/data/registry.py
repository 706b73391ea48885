"""A small registry of dataset builders. Modules under :mod:`xmodal.data.synth` call
:func:`register_builder` when imported; :func:`list_builders` imports them all first."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xmodal.errors import ConfigError

BuildFn = Callable[..., Path]  # build_fn(root: Path, **options) -> root of a manifest dataset


@dataclass(frozen=True)
class Builder:
    name: str
    description: str
    build: BuildFn


_BUILDERS: dict[str, Builder] = {}


def register_builder(name: str, description: str, build_fn: BuildFn) -> BuildFn:
    """Register ``build_fn(root, **options) -> Path`` under ``name``; re-registering the same function is a
    no-op (modules may be imported twice), another function under a taken name is an error."""
    old = _BUILDERS.get(name)
    if old is not None and old.build is not build_fn and getattr(old.build, "__qualname__", None) != getattr(
            build_fn, "__qualname__", ""):
        raise ConfigError(f"dataset builder {name!r} is already registered by {old.build.__module__}")
    _BUILDERS[name] = Builder(name, description, build_fn)
    return build_fn


def _import_synth() -> None:
    import xmodal.data.synth as synth

    for mod in pkgutil.iter_modules(synth.__path__):
        importlib.import_module(f"{synth.__name__}.{mod.name}")


def list_builders() -> list[Builder]:
    """Every registered builder, sorted by name (imports :mod:`xmodal.data.synth` modules first)."""
    _import_synth()
    return [_BUILDERS[k] for k in sorted(_BUILDERS)]


def get_builder(name: str) -> Builder:
    """The builder named ``name``; ConfigError listing the known ones otherwise."""
    _import_synth()
    if name not in _BUILDERS:
        raise ConfigError(f"unknown dataset builder {name!r}; known: {', '.join(sorted(_BUILDERS)) or 'none'}")
    return _BUILDERS[name]
