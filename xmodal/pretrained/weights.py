"""Local pretrained weights: find the file, check its sha256, load a state_dict without unpickling code.

Weights are never downloaded. A file is looked up as (1) the path given, which may be the file or a directory
holding it, (2) ``$XMODAL_WEIGHTS/<filename>``, (3) ``~/.cache/xmodal/weights/<filename>``. When none exists,
:class:`MissingWeightsError` names the file, the places searched and where users usually get it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from xmodal.errors import ChecksumError, CorruptFileError, MissingWeightsError

ENV_VAR = "XMODAL_WEIGHTS"
DEFAULT_CACHE = Path("~/.cache/xmodal/weights")


@dataclass(frozen=True)
class WeightFile:
    """A known weights file: its name, its sha256 (or a prefix of it, as torch.hub names carry) and where
    users usually get it."""

    filename: str
    sha256: str | None
    source: str
    aliases: tuple[str, ...] = ()  # other names the same file is distributed under
    torchscript: bool = False  # the release is a TorchScript archive (loaded only when its sha256 matches)


def cache_dirs() -> list[Path]:
    """Directories searched after an explicit path: ``$XMODAL_WEIGHTS`` (if set), then the user cache."""
    dirs = [Path(os.environ[ENV_VAR]).expanduser()] if os.environ.get(ENV_VAR) else []
    return dirs + [DEFAULT_CACHE.expanduser()]


def find_weights(spec: WeightFile, path: str | Path | None = None) -> Path:
    """Return the local file for ``spec``, or raise :class:`MissingWeightsError` saying what to put where."""
    names = (spec.filename, *spec.aliases)
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        candidates += [p / n for n in names] if p.is_dir() else [p]
    candidates += [d / n for d in cache_dirs() for n in names]
    for c in candidates:
        if c.is_file():
            return c
    searched = ", ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"pretrained weights {spec.filename!r} not found (searched: {searched}). They cannot be downloaded "
        f"here: get them from {spec.source} and pass the file or its directory (--weights DIR), or put it in "
        f"${ENV_VAR}.")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str | None) -> None:
    """Raise :class:`ChecksumError` unless the file's sha256 starts with ``expected`` (a full digest or the
    8+-character prefix that torch.hub file names carry). ``None`` skips the check."""
    if not expected:
        return
    actual = sha256_file(path)
    if not actual.startswith(expected.lower()):
        raise ChecksumError(f"{path}: sha256 is {actual}, expected {expected}"
                            f"{'...' if len(expected) < 64 else ''}; the file is corrupt or a different version")


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive: a zip holding ``<name>/constants.pkl`` and ``<name>/code/``
    (what ``torch.jit.save`` writes; a ``torch.save`` zip has neither)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_state_dict(path: str | Path, torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Load a state_dict from safetensors or a plain torch file (``weights_only=True``, which unpickles no code).

    A TorchScript archive is loaded (``torch.jit.load``, keeping only its tensors) only with ``torchscript=True``:
    loading one runs the scripted code it carries (``__setstate__`` of its modules), so a file given as a state
    dict never falls through to it. Callers pass ``torchscript=True`` only for a file they know by name and
    checksum (OpenAI's CLIP ``.pt`` release, see :func:`load_weights`).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CorruptFileError(f"cannot read safetensors weights ({exc})", source=path) from exc
    if is_torchscript_archive(path):
        if not torchscript:
            raise CorruptFileError(
                "is a TorchScript archive, not a state dict; loading it would run the code it carries. "
                "Re-save its tensors as safetensors (or torch.save of a state_dict) and pass that file",
                source=path,
            )
        try:
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise CorruptFileError(f"cannot read TorchScript weights ({exc})", source=path) from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a torch file, or one whose pickle needs more than tensors
            raise CorruptFileError(f"cannot read weights ({exc})", source=path) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptFileError("expected a mapping of parameter names to tensors", source=path)
    return dict(obj)


def load_weights(spec: WeightFile, path: str | Path | None = None, check: bool = True
                 ) -> dict[str, torch.Tensor]:
    """Find, verify (sha256) and load the state_dict of ``spec``. ``check=False`` skips the checksum, for
    re-saved copies (e.g. safetensors) of the same tensors.

    A TorchScript archive loads only when ``spec.torchscript`` names the release as one and its checksum was
    verified: with ``check=False`` the file is an unknown one and must be a plain state dict.
    """
    file = find_weights(spec, path)
    if check:
        verify_sha256(file, spec.sha256)
    return load_state_dict(file, torchscript=spec.torchscript and check and spec.sha256 is not None)
