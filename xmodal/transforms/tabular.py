"""Table columns: numeric (standardised with the training mean and std; a missing value is an error naming
the column, or an explicit missing indicator) and categorical (a vocabulary with an unknown bucket)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import DataError, NonFiniteError, ShapeError
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
    """number (or a fixed-length vector of numbers) -> float32 ``(d,)`` ``(x - mean) / std`` per position
    (training statistics), or ``(2d,)`` ``[z..., missing...]`` with ``missing="indicator"`` (a missing value
    gives z 0 and flag 1). With ``missing="error"`` (default) a NaN, empty or infinite value raises
    :class:`NonFiniteError` naming ``column``."""

    defaults: ClassVar[dict[str, Any]] = {"column": "numeric", "missing": "error"}

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.params["missing"] not in ("error", "indicator"):
            raise DataError(f"missing must be 'error' or 'indicator', got {self.params['missing']!r}",
                            source=self.params["column"])
        self.mean, self.std = np.zeros(1), np.ones(1)

    def _vector(self, value: Any, dim: int | None) -> np.ndarray:
        column = self.params["column"]
        if isinstance(value, (list, tuple, np.ndarray)):
            x = np.asarray([_number(v, column) for v in value], dtype=np.float64)
        else:
            x = np.full(dim or 1, _number(value, column))
        if dim is not None and len(x) != dim:
            raise ShapeError(f"value has {len(x)} numbers, expected {dim} like the training rows", source=column)
        if not np.isfinite(x).all() and self.params["missing"] == "error":
            raise NonFiniteError(f"value {value!r} is missing or not finite (use missing='indicator' to "
                                 "keep such rows with a missing flag)", source=column)
        return x

    def fit(self, values: Iterable[Any]) -> NumericTransform:
        rows, dim = [], None
        for v in values:
            x = self._vector(v, dim)
            dim = dim or len(x)
            rows.append(x)
        if rows:
            table = np.stack(rows)  # (rows, d)
            seen = np.isfinite(table)
            counts = np.maximum(seen.sum(0), 1)
            self.mean = np.where(seen, table, 0.0).sum(0) / counts
            var = np.where(seen, (table - self.mean) ** 2, 0.0).sum(0) / counts
            self.std = np.where(var > 0, np.sqrt(var), 1.0)
        return self

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def load_state(self, state: Mapping[str, Any]) -> NumericTransform:
        self.mean = np.atleast_1d(np.asarray(state["mean"], dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(state["std"], dtype=np.float64))
        return self

    def apply(self, value: Any) -> torch.Tensor:
        x = self._vector(value, len(self.mean))
        ok = np.isfinite(x)
        z = np.where(ok, (np.where(ok, x, 0.0) - self.mean) / self.std, 0.0)
        if self.params["missing"] == "indicator":
            z = np.concatenate([z, (~ok).astype(np.float64)])
        return torch.from_numpy(z.astype(np.float32))


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
