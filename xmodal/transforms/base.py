"""The transform contract, the registry of transforms and ``transform_for(spec, **params)``.

A transform turns one value of a field (a file path, or an inline value such as a string or a number) into
what the modality's encoder expects: a tensor, or a dict of tensors (a graph's ``x`` and ``edge_index``).
Transforms whose work is expensive (decoding, resampling, spectrograms) are cached on disk when they are given
a file: the key hashes the file's bytes, the transform's name, its parameters and any weights it uses
(:mod:`xmodal.transforms.cache`). Transforms that learn from the training data (a word vocabulary, a column's
mean and standard deviation) have ``fit(values)`` and a JSON ``state()`` that a run directory keeps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from xmodal.errors import ConfigError
from xmodal.modalities import ModalitySpec, get_modality
from xmodal.transforms.cache import TransformCache, file_digest, make_key

Output = torch.Tensor | dict[str, torch.Tensor]


class Transform:
    """Base class. Subclasses set ``name``, ``defaults`` (every accepted parameter with its default) and
    ``expensive``, and implement :meth:`apply`; fitted ones also :meth:`fit`, :meth:`state`, :meth:`load_state`."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    expensive: ClassVar[bool] = False
    cache_inline: ClassVar[bool] = False  # also cache inline strings (keyed by their UTF-8 bytes)

    def __init__(self, cache: TransformCache | None = None, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"transform {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                              f"accepted: {', '.join(sorted(self.defaults)) or 'none'}")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.cache = cache

    def apply(self, value: Any) -> Output:
        raise NotImplementedError

    def fit(self, values: Iterable[Any]) -> Transform:
        """Learn from training values (no-op for transforms that learn nothing)."""
        return self

    def state(self) -> dict[str, Any]:
        """What :meth:`fit` learnt, as JSON-able data (saved beside a trained model)."""
        return {}

    def load_state(self, state: Mapping[str, Any]) -> Transform:
        return self

    def weights_fingerprint(self) -> str | None:
        """A digest of the weights the transform uses (part of the cache key), or None."""
        return None

    def cache_key(self, value: str | Path) -> str:
        """Key of ``value``'s result: its file's bytes (or, for an inline string, its UTF-8 bytes), the
        transform's name, parameters and weights."""
        content = ("text:" + hashlib.sha256(str(value).encode()).hexdigest() if self.cache_inline
                   else file_digest(value))
        return make_key(content, self.name, self.params, self.weights_fingerprint())

    def _cacheable(self, value: Any) -> bool:
        if self.cache is None or not self.expensive:
            return False
        return isinstance(value, str) if self.cache_inline else isinstance(value, (str, Path))

    def __call__(self, value: Any) -> Output:
        from xmodal.transforms.inline import as_file, inline_bytes

        inline = inline_bytes(value)
        if inline is not None:  # media bytes from a table cell: decoded (and cached) as the file they are
            with as_file(*inline) as path:
                return self(path)
        cache = self.cache
        if cache is None or not self._cacheable(value):
            return self.apply(value)
        found = cache.get_or_compute(self.cache_key(value), lambda: _as_tensors(self.apply(value)))
        return found["value"] if set(found) == {"value"} else found

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params.items())})"


def _as_tensors(out: Output) -> dict[str, torch.Tensor]:
    return {"value": out} if isinstance(out, torch.Tensor) else dict(out)


_REGISTRY: dict[str, type[Transform]] = {}
_DEFAULTS: dict[str, str] = {}  # modality name -> transform name


def register_transform(name: str, modalities: Iterable[str] = ()) -> Callable[[type[Transform]], type[Transform]]:
    """Class decorator: register a transform under ``name``, the default one of ``modalities``."""
    def wrap(cls: type[Transform]) -> type[Transform]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ConfigError(f"transform {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        for m in modalities:
            _DEFAULTS[m] = name
        return cls
    return wrap


def list_transforms() -> dict[str, str]:
    """``{transform name: class name}`` of every registered transform."""
    _load_builtin()
    return {k: v.__qualname__ for k, v in sorted(_REGISTRY.items())}


def default_transform_name(spec: ModalitySpec | str) -> str:
    _load_builtin()
    spec = get_modality(spec) if isinstance(spec, str) else spec
    return _DEFAULTS[spec.name]


# Encoder families whose input is not the spec's default: a pretrained text tower takes its own tokens (here:
# MiniLM sentence embeddings, which the frozen tower would compute anyway, cached once per text).
ENCODER_TRANSFORMS: dict[str, str] = {"minilm": "minilm_embedding"}


def transform_for(spec: ModalitySpec | str, transform: str | None = None, cache: TransformCache | None = None,
                  encoder: str | None = None, **params: Any) -> Transform:
    """The transform a modality's encoder expects, configured by ``params``: ``transform=`` names a registered
    one; otherwise the encoder family (``encoder="minilm"`` for text) or the spec decides. ConfigError names an
    unknown transform or parameter."""
    _load_builtin()
    spec = get_modality(spec) if isinstance(spec, str) else spec
    name = transform or ENCODER_TRANSFORMS.get(encoder or "") or _DEFAULTS.get(spec.name)
    if name not in _REGISTRY:
        raise ConfigError(f"no transform {name!r} for modality {spec.name!r}; registered: "
                          f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](cache=cache, **params)


def build_transforms(fields: Mapping[str, str], cache: TransformCache | None = None,
                     params: Mapping[str, Mapping[str, Any]] | None = None,
                     encoders: Mapping[str, str] | None = None) -> dict[str, Transform]:
    """One transform per field (``{field: modality}``), configured by ``params[field]`` (which may name
    another ``transform``) and chosen for ``encoders[field]`` (an encoder family); table columns get their
    field name for error messages."""
    out = {}
    for field, modality in fields.items():
        extra = dict((params or {}).get(field, {}))
        spec = get_modality(modality)
        if spec.family == "tabular":
            extra.setdefault("column", field)
        out[field] = transform_for(spec, cache=cache, encoder=(encoders or {}).get(field), **extra)
    return out


def describe_transforms(transforms: Mapping[str, Transform]) -> dict[str, dict[str, Any]]:
    """``{field: {"name", "params", "state"}}``: JSON-able, enough to rebuild the fitted transforms offline
    (a run directory or a shard index keeps it)."""
    return {f: {"name": t.name, "params": dict(t.params), "state": t.state()} for f, t in transforms.items()}


def restore_transforms(description: Mapping[str, Mapping[str, Any]],
                       cache: TransformCache | None = None) -> dict[str, Transform]:
    """The transforms :func:`describe_transforms` described, with their fitted state loaded."""
    _load_builtin()
    out = {}
    for field, d in description.items():
        if d.get("name") not in _REGISTRY:
            raise ConfigError(f"transform of field {field!r}: unknown name {d.get('name')!r}")
        out[field] = _REGISTRY[d["name"]](cache=cache, **d.get("params", {})).load_state(d.get("state", {}))
    return out


def _load_builtin() -> None:
    # Importing the modules runs their @register_transform decorators.
    from xmodal.transforms import audio, geometry, graph, image, midi, motion, tabular, text, video  # noqa: F401
