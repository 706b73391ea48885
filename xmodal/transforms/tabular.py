"""Table columns: numeric (standardised with the training mean and std; a missing value is an error naming
the column, or an explicit missing indicator) and categorical (a vocabulary with an unknown bucket)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch

from xmodal.errors import DataError, NonFiniteError
from xmodal.transforms.base import Transform, register_transform

UNKNOWN = "<unknown>"


def _number(value: Any, column: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"value {value!r} is not a number", source=column) from None


@register_transform("numeric", modalities=("numeric",))
class NumericTransform(Transform):
    """number -> float32 ``(1,)`` ``(x - mean) / std`` (training statistics), or ``(2,)`` ``[z, missing]`` with
    ``missing="indicator"`` (a missing value gives ``[0, 1]``). With ``missing="error"`` (default) a NaN,
    empty or infinite value raises :class:`NonFiniteError` naming ``column``."""

    defaults: ClassVar[dict[str, Any]] = {"column": "numeric", "missing": "error"}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.params["missing"] not in ("error", "indicator"):
            raise DataError(f"missing must be 'error' or 'indicator', got {self.params['missing']!r}",
                            source=self.params["column"])
        self.mean, self.std = 0.0, 1.0

    def _value(self, value: Any) -> float:
        x = _number(value, self.params["column"])
        if not math.isfinite(x) and self.params["missing"] == "error":
            raise NonFiniteError(f"value {value!r} is missing or not finite (use missing='indicator' to "
                                 "keep such rows with a missing flag)", source=self.params["column"])
        return x

    def fit(self, values: Iterable[Any]) -> NumericTransform:
        xs = [x for x in (self._value(v) for v in values) if math.isfinite(x)]
        if xs:
            self.mean = sum(xs) / len(xs)
            var = sum((x - self.mean) ** 2 for x in xs) / len(xs)
            self.std = math.sqrt(var) if var > 0 else 1.0
        return self

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: Mapping[str, Any]) -> NumericTransform:
        self.mean, self.std = float(state["mean"]), float(state["std"])
        return self

    def apply(self, value: Any) -> torch.Tensor:
        x = self._value(value)
        if self.params["missing"] == "indicator":
            ok = math.isfinite(x)
            return torch.tensor([(x - self.mean) / self.std if ok else 0.0, 0.0 if ok else 1.0])
        return torch.tensor([(x - self.mean) / self.std], dtype=torch.float32)


@register_transform("categorical", modalities=("categorical",))
class CategoricalTransform(Transform):
    """category -> int64 scalar index; categories seen fewer than ``min_count`` times in training, and any
    new one, map to index 0 (the unknown bucket). Values are compared as strings (``3`` and ``"3"`` agree)."""

    defaults: ClassVar[dict[str, Any]] = {"column": "categorical", "min_count": 1}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.vocab: dict[str, int] = {UNKNOWN: 0}

    def fit(self, values: Iterable[Any]) -> CategoricalTransform:
        counts = Counter(str(v) for v in values)
        keep = sorted(k for k, c in counts.items() if c >= self.params["min_count"])
        self.vocab = {UNKNOWN: 0, **{k: i + 1 for i, k in enumerate(keep)}}
        return self

    def state(self) -> dict[str, Any]:
        return {"vocab": self.vocab}

    def load_state(self, state: Mapping[str, Any]) -> CategoricalTransform:
        self.vocab = dict(state["vocab"])
        return self

    def apply(self, value: Any) -> torch.Tensor:
        return torch.tensor(self.vocab.get(str(value), 0), dtype=torch.int64)
