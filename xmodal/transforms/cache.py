"""One on-disk cache for every expensive transform and feature extractor in xmodal.

An entry is a dict of tensors stored as a safetensors file (no pickle) under a key that hashes everything the
result depends on: the bytes of the input file(s), the transform's (or extractor's) name, its parameters, and
a fingerprint of any weights involved. Change any of them and the key changes, so a stale entry is never
served. Writes are atomic (a uniquely named temporary file in the same directory, fsync, then ``os.replace``),
so several processes (dataloader workers, torchrun ranks) may fill the same cache at once: the worst case is
that two of them compute the same entry and the last rename wins with identical bytes. A damaged entry is
recomputed, never trusted.

The cache lives in ``$XMODAL_CACHE/features`` or ``~/.cache/xmodal/features`` unless a directory is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


def default_cache_dir() -> Path:
    root = os.environ.get("XMODAL_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/xmodal").expanduser()) / "features"


def file_digest(path: str | Path) -> str:
    """sha256 of one file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def files_digest(files: Iterable[Path], root: Path) -> str:
    """sha256 over the sorted relative names and contents of ``files`` (a folder's identity)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(Path(f).relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        h.update(b"\1")
    return h.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's parameter and buffer bytes (names included): identifies the weights in use."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def make_key(content: str, name: str, params: Mapping[str, Any], weights: str | None = None) -> str:
    """The cache key of a result: content digest, transform name, parameters (JSON, sorted) and weights."""
    blob = json.dumps({"content": content, "name": name, "params": params, "weights": weights},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Every global random stream as it was on entry, on exit: torch's CPU generator and those of initialised
    CUDA devices (``torch.random.fork_rng``), numpy's legacy global generator and Python's ``random``."""
    import random

    import numpy as np

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class TransformCache:
    """``get``/``put``/``get_or_compute`` dicts of tensors by key; counts hits and misses (``stats()``)."""

    def __init__(self, directory: str | Path | None = None, enabled: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def get(self, key: str) -> Tensors | None:
        if not self.enabled or not self.path(key).is_file():
            self.misses += 1
            return None
        from safetensors.torch import load_file

        try:
            found = load_file(str(self.path(key)))
        except Exception:  # noqa: BLE001 -- a damaged entry (disk full, foreign file) is recomputed, never trusted
            self.misses += 1
            return None
        self.hits += 1
        return found

    def put(self, key: str, tensors: Mapping[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
        if not self.enabled:
            return
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=meta or {})
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_or_compute(self, key: str, compute: Callable[[], Mapping[str, torch.Tensor]],
                       meta: dict[str, str] | None = None) -> Tensors:
        """The cached tensors of ``key``, or ``compute()``'s, stored before they are returned.

        ``compute`` runs with the global random streams (torch's CPU and initialised accelerators', numpy's,
        Python's) saved and restored: building a module or training an encoder on a miss draws from them, and a
        run that filled the cache would otherwise start its model from other weights than a run that hit it."""
        found = self.get(key)
        if found is not None:
            return found
        with random_state_kept():
            result = dict(compute())
        self.put(key, result, meta)
        return result
