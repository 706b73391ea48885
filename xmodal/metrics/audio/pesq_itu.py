"""PESQ (ITU-T P.862 / P.862.2) on the ITU reference C code shipped in the ``pesq`` package 0.0.4
(ludlows/python-pesq), with batches spread over worker processes.

The score is MOS-LQO: ``mode='nb'`` is P.862 with the P.862.1 mapping (8 or 16 kHz), ``mode='wb'`` is P.862.2
(16 kHz only). The C code aligns the two signals in time itself, so a reference and a degraded signal may
differ in length; within a 2-D batch they share a length by construction. Values are the package's own, bit
for bit: every signal goes through ``pesq.pesq``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from xmodal.errors import (
    EmptyInputError,
    MetricInputError,
    NonFiniteError,
    SampleRateError,
    ShapeError,
    require_module,
)
from xmodal.metrics.audio._inputs import check_rate, like_input, to_numpy

RATES = (8000, 16000)
MODES = ("nb", "wb")


class PesqFailure(MetricInputError):
    """The P.862 code rejected a pair (too short a buffer, no utterance found). ``source`` names the item."""


def _check_signal(x: np.ndarray, name: str) -> None:
    if x.ndim != 1:
        raise ShapeError(f"expected a 1-D signal, got shape {x.shape}", name)
    if x.size == 0:
        raise EmptyInputError("holds no samples", name)
    if not np.all(np.isfinite(x)):
        raise NonFiniteError("holds NaN or infinity", name)
    if not np.any(x):
        raise EmptyInputError("is digital silence (all zeros); PESQ needs speech", name)


def _one(args: tuple[np.ndarray, np.ndarray, int, str, str]) -> float:
    """Score one pair in a worker; P.862 failures come back as typed errors naming the item."""
    ref, deg, fs, mode, name = args
    pesq_mod = require_module("pesq", extra="audio")
    try:
        return float(pesq_mod.pesq(fs, ref, deg, mode))
    except pesq_mod.NoUtterancesError as exc:
        raise EmptyInputError(
            f"P.862 found no utterance (is it speech, and loud enough?): {exc}", name
        ) from None
    except pesq_mod.PesqError as exc:
        raise PesqFailure(f"P.862 rejected the pair: {type(exc).__name__}: {exc}", name) from None


def _as_list(x: Any, name: str) -> tuple[list[np.ndarray], bool]:
    """One signal (T,), a batch (B, T), or a sequence of 1-D signals of any lengths."""
    if isinstance(x, (list, tuple)):
        return [to_numpy(s, f"{name}[{i}]") for i, s in enumerate(x)], False
    arr = to_numpy(x, name)
    if arr.ndim == 1:
        return [arr], True
    if arr.ndim == 2:
        return list(arr), False
    raise ShapeError(f"expected one signal (T,) or a batch (B, T), got shape {arr.shape}", name)


def pesq(ref: Any, deg: Any, fs: int, mode: str = "wb", n_workers: int | None = None):
    """PESQ MOS-LQO of ``deg`` against ``ref`` (ITU-T P.862 via the ``pesq`` package).

    ``ref``/``deg``: one signal, a (B, T) array or tensor, or equal-length sequences of 1-D signals.
    ``fs``: 8000 or 16000. ``mode``: 'nb' or 'wb' (wide band needs 16 kHz). Batches run in ``n_workers``
    processes (default: all CPUs; 1 runs serially here). Returns a float, an array (B,), or a tensor for
    torch input. Raises SampleRateError, EmptyInputError (silence, no utterance) and ShapeError.
    """
    fs = check_rate(fs, RATES, metric="PESQ")
    if mode not in MODES:
        raise MetricInputError(f"mode must be one of {MODES}, got {mode!r}", "mode")
    if mode == "wb" and fs != 16000:
        raise SampleRateError(
            "wide-band PESQ (P.862.2) is defined at 16000 Hz only; use mode='nb' at 8000 Hz", "fs"
        )
    refs, single = _as_list(ref, "ref")
    degs, _ = _as_list(deg, "deg")
    if len(refs) != len(degs):
        raise ShapeError(f"ref holds {len(refs)} signals but deg holds {len(degs)}", "deg")
    jobs = []
    for i, (r, d) in enumerate(zip(refs, degs)):
        tag = "" if single else f"[{i}]"
        _check_signal(r, f"ref{tag}")
        _check_signal(d, f"deg{tag}")
        jobs.append((r, d, fs, mode, f"pair{tag}" if tag else "pair"))
    workers = min(len(jobs), n_workers or os.cpu_count() or 1)
    if workers <= 1:
        scores = [_one(job) for job in jobs]
    else:
        # fork starts workers in milliseconds; the C code uses no threads, so forking beside torch is safe.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
            scores = list(pool.map(_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    values = np.asarray(scores, dtype=np.float64)
    return like_input(values[0] if single else values, ref, single)


def pesq_batch(
    refs: Sequence[Any], degs: Sequence[Any], fs: int, mode: str = "wb", n_workers: int | None = None
) -> np.ndarray:
    """PESQ of many pairs of possibly different lengths; always returns an array (B,)."""
    return np.atleast_1d(np.asarray(pesq(list(refs), list(degs), fs, mode, n_workers), dtype=np.float64))
