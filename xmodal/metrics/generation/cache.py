"""On-disk cache of extracted features, so a second evaluation of the same folder is fast.

The key hashes (1) every file's relative name and bytes, (2) the extractor's name and a fingerprint of its
weights, (3) the preprocessing/protocol options. Entries are safetensors files (no pickle), written atomically.
The cache lives in ``$XMODAL_CACHE/features`` or ``~/.cache/xmodal/features``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def default_cache_dir() -> Path:
    root = os.environ.get("XMODAL_CACHE")
    return (Path(root).expanduser() if root else Path("~/.cache/xmodal").expanduser()) / "features"


def files_digest(files: list[Path], root: Path) -> str:
    """sha256 over the sorted relative names and contents of ``files``."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(root)).encode() + b"\0")
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


class FeatureCache:
    """``get``/``put`` dictionaries of tensors under a key built from files, extractor and options."""

    def __init__(self, directory: str | Path | None = None, enabled: bool = True) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.enabled = enabled

    @staticmethod
    def key(files_sha: str, extractor: str, options: dict[str, Any]) -> str:
        blob = json.dumps({"files": files_sha, "extractor": extractor, "options": options}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        if not self.enabled or not self.path(key).is_file():
            return None
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path(key)))
        except Exception:  # a damaged entry is recomputed, never trusted
            return None

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> None:
        if not self.enabled:
            return
        from safetensors.torch import save_file

        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path(key).with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta or {})
        os.replace(tmp, self.path(key))
