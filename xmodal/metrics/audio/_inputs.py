"""Input checks shared by the audio metrics: numpy or torch in, same kind out."""

from __future__ import annotations

from typing import Any

import numpy as np

from xmodal.errors import EmptyInputError, MetricInputError, NonFiniteError, SampleRateError, ShapeError


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` (checked without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A float ndarray from a numpy array, torch tensor or list; integer PCM becomes float64."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"expected an array or tensor of samples, got {type(x).__name__}", name
        ) from exc
    if arr.dtype.kind not in "fiub":
        raise MetricInputError(f"expected real-valued samples, got dtype {arr.dtype}", name)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return arr


def check_pair(
    clean: np.ndarray, degraded: np.ndarray, names: tuple[str, str] = ("clean", "degraded")
) -> None:
    """Both signals must have the same shape, hold samples, and be finite."""
    if clean.shape != degraded.shape:
        raise ShapeError(
            f"{names[0]} has shape {clean.shape} but {names[1]} has shape {degraded.shape}; "
            "they must match sample for sample (align and trim first)",
            names[1],
        )
    if clean.ndim == 0 or clean.shape[-1] == 0:
        raise EmptyInputError(
            f"expected at least one sample on the last axis, got shape {clean.shape}", names[0]
        )
    for arr, name in zip((clean, degraded), names):
        if not np.all(np.isfinite(arr)):
            raise NonFiniteError("holds NaN or infinity", name)


def check_rate(fs: Any, allowed: tuple[int, ...] | None = None, metric: str = "metric") -> int:
    """An integer sample rate, optionally one of ``allowed``."""
    if isinstance(fs, bool) or not float(fs).is_integer() or int(fs) <= 0:
        raise SampleRateError(f"{metric} needs a positive integer sample rate in Hz, got {fs!r}", "fs")
    fs = int(fs)
    if allowed is not None and fs not in allowed:
        raise SampleRateError(
            f"{metric} supports sample rates {list(allowed)} Hz, got {fs}; resample first", "fs"
        )
    return fs


def like_input(values: np.ndarray, template: Any, single: bool):
    """Return a float (numpy) or 0-d tensor (torch) for one signal; an array or tensor for a batch."""
    if is_torch(template):
        import torch

        out = torch.as_tensor(np.asarray(values, dtype=np.float64))
        return out.reshape(()) if single else out
    return float(values) if single else np.asarray(values, dtype=np.float64)
