"""Registries of model parts looked up by name: encoders, fusions, heads and losses.

A name is either one registered with a decorator (``@register_encoder("cnn2d")``) or a dotted path to user code,
``my_pkg.module:MyEncoder``, imported on first use, so a recipe plugs in its own parts without editing xmodal.
What a registered object must be is each registry's contract (see :mod:`xmodal.models.encoders`,
``fusions``, ``heads`` and ``losses``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from xmodal.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def import_object(path: str, what: str) -> Any:
    """The object named ``package.module:attr`` (``attr`` may be dotted); ConfigError when the import or the
    attribute fails, naming ``path`` and ``what`` asked for it."""
    if not _DOTTED.match(path):
        raise ConfigError(f"{what}: {path!r} is not a dotted path of the form package.module:Name")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module {module_name!r} of {path!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what}: module {module_name!r} has no attribute {attr!r} ({path!r})") from None
    return obj


class Registry:
    """Named factories of one kind (``kind`` is "encoder", "fusion", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: register the factory under ``name`` (a second registration under a name is an error)."""

        def decorate(factory: F) -> F:
            if name in self._items and self._items[name] is not factory:
                raise ConfigError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
            self._items[name] = factory
            return factory

        return decorate

    def get(self, name: str, what: str | None = None) -> Callable[..., Any]:
        """The factory registered as ``name``, or the object at the dotted path ``name``; ``what`` (the recipe key
        asking, e.g. ``model.fusion.kind``) is named in errors."""
        what = what or self.kind
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what}: expected the name of a{'n' if self.kind[0] in 'aeiou' else ''} "
                              f"{self.kind} ({', '.join(self.names())}) or a dotted path, got {name!r}")
        if name in self._items:
            return self._items[name]
        if ":" in name:
            obj = import_object(name, what)
            if not callable(obj):
                raise ConfigError(f"{what}: {name!r} is not callable")
            return obj
        raise ConfigError(f"{what}: unknown {self.kind} {name!r}; known: {', '.join(self.names())}, "
                          "or a dotted path package.module:Name")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


ENCODERS = Registry("encoder")
FUSIONS = Registry("fusion")
HEADS = Registry("head")
LOSSES = Registry("loss")


def register_encoder(name: str) -> Callable[[F], F]:
    """Register ``factory(spec: ModalitySpec, **settings) -> nn.Module`` (with ``out_dim``) as encoder family
    ``name``."""
    return ENCODERS.register(name)


def register_fusion(name: str) -> Callable[[F], F]:
    """Register ``factory(in_dims: {modality: dim}, **settings) -> nn.Module`` (with ``out_dim``)."""
    return FUSIONS.register(name)


def register_head(name: str) -> Callable[[F], F]:
    """Register ``factory(in_dim: int, **settings) -> nn.Module``; the module's ``output_key`` (default
    ``"logits"``) names its output in the model's output dict."""
    return HEADS.register(name)


def register_loss(name: str) -> Callable[[F], F]:
    """Register ``factory(**settings) -> loss(outputs, batch) -> scalar tensor``; an attribute
    ``coupled = True`` on the factory marks losses that couple the samples of a batch (contrastive)."""
    return LOSSES.register(name)
