"""Atomic checkpoints without pickle: tensors in safetensors, everything else in a JSON state.

Layout: ``<root>/step_000000120/{tensors.safetensors, state.json}``. The tensor file holds the model
(``model/<name>``) and the optimizer's per-parameter tensors (``optim/<param name>/<slot>``); ``state.json``
holds the step, epoch and position in the epoch, the RNG states of every rank, the optimizer's param groups,
the scheduler and grad-scaler states and the recipe. Each file is written to a temporary name, flushed, fsynced
and moved into place with ``os.replace``; ``state.json`` goes last and is the commit marker, so a crash at any
moment leaves either the previous checkpoint or the new one, never a half one that :func:`find_latest` accepts.

FSDP2 runs write ``<root>/step_.../dcp/`` with ``torch.distributed.checkpoint`` instead (every rank writes its
own shards, nothing is gathered on one rank; :func:`write_sharded_checkpoint`), committed the same way by rank 0's
``state.json`` after all ranks finished. Its ``.metadata`` file is torch's own pickle: load such checkpoints only
from runs you made (the checksums below guard against corruption, not against a crafted file).

Integrity: ``state.json`` records the size and sha256 of every file of the checkpoint (``files``) and the sha256
of its own other fields (``state_sha256``); :func:`read_checkpoint` verifies both, so a flipped bit anywhere is
a :class:`CorruptFileError`, and :func:`load_latest` then falls back to the previous complete checkpoint with a
warning that names the one it skipped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
import signal
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xmodal.errors import ConfigError, CorruptFileError

TENSORS = "tensors.safetensors"
STATE = "state.json"
DCP_DIR = "dcp"  # the torch.distributed.checkpoint layout of sharded (FSDP2) runs
FORMAT = "xmodal-checkpoint/2"  # /2: sha256 of every file and of the state; /1 (sizes only) is still read
LEGACY_FORMATS = ("xmodal-checkpoint/1",)
# Fault injection for tests: kill this process after the tensors of checkpoint <step> are written, before its
# JSON commit marker, as a power cut or OOM kill would.
FAULT_ENV = "XMODAL_FAULT_CHECKPOINT_STEP"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# One optimizer, or several over disjoint parameters (a GAN's): torch's state-dict API keys their state by
# parameter name and concatenates their param groups in order, so the layout below is the same for both.
Optimizers = torch.optim.Optimizer | Sequence[torch.optim.Optimizer]


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:09d}"


# ----------------------------------------------------------------------------------------------- RNG state
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, numpy, random) as JSON-safe values."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # legacy=True, the default: (name, keys, pos, has_gauss, gauss)
    py_state = random.getstate()
    return {
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(_unb64(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ------------------------------------------------------------------------------------------ state dicts
def _options(*, cpu_offload: bool = False, strict: bool = True) -> Any:
    """Full (unsharded) state-dict options; the other fields keep torch's defaults."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict)


def gather_state(model: nn.Module, optimizer: Optimizers) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Full (unsharded, CPU) model and optimizer state as flat tensors plus JSON-safe optimizer fields.

    Collective under FSDP: every rank must call it; rank 0 gets the full state (other ranks may get less).
    Works the same for a plain module and DDP (names have no ``module.`` prefix).
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    # torch types both as nested unions; a model's state dict holds tensors, an optimizer's is torch.optim's
    # {"state": {param: {slot: value}}, "param_groups": [...]}
    msd = cast(dict[str, torch.Tensor], get_model_state_dict(model, options=_options(cpu_offload=True)))
    osd = cast(dict[str, Any], get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True)))
    tensors: dict[str, torch.Tensor] = {}
    for name, value in msd.items():
        tensors[f"model/{name}"] = value.detach().cpu().contiguous().clone()  # clone: no shared storage
    scalars: dict[str, dict[str, Any]] = {}
    for pname, slots in osd.get("state", {}).items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pname}/{slot}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(pname, {})[slot] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd.get("param_groups", [])]
    return tensors, {"param_groups": groups, "scalars": scalars}


def restore_state(
    model: nn.Module, optimizer: Optimizers | None, tensors: dict[str, torch.Tensor], optim_json: dict[str, Any] | None
) -> None:
    """Load model (and optimizer) state saved by :func:`gather_state` into a possibly wrapped/sharded model."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    msd: dict[str, Any] = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    set_model_state_dict(model, msd, options=_options(strict=True))
    if optimizer is None or optim_json is None:
        return
    state: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            pname, slot = key[len("optim/") :].rsplit("/", 1)
            # A fresh copy: safetensors hands out tensors at the file's byte offsets (4-byte aligned, say), and the
            # optimizer keeps what it is given; the uninterrupted run's moments sit in 64-byte aligned memory.
            # Same values either way, but the resumed run should not differ from it even in memory layout.
            state.setdefault(pname, {})[slot] = value.clone()
    for pname, slots in optim_json.get("scalars", {}).items():
        state.setdefault(pname, {}).update(slots)
    groups = []
    for g in optim_json["param_groups"]:
        g = dict(g)
        if "betas" in g:  # JSON turned the tuple into a list
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optim_state: dict[str, Any] = {"state": state, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, optim_state, options=_options())


# ------------------------------------------------------------------------------------------ atomic files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _state_digest(state: dict[str, Any]) -> str:
    """sha256 of the state's canonical JSON without its own digest field."""
    body = {k: v for k, v in state.items() if k != "state_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def write_checkpoint(root: Path, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep_last: int) -> Path:
    """Write one checkpoint atomically (call on one rank only), then prune to the last ``keep_last`` complete ones."""
    directory = step_dir(root, step)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE).unlink(missing_ok=True)  # re-writing a step: un-commit it first
    tmp = directory / f".{TENSORS}.tmp{os.getpid()}"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    _commit(tmp, directory / TENSORS)

    if os.environ.get(FAULT_ENV) == str(step):
        os.kill(os.getpid(), signal.SIGKILL)

    size = (directory / TENSORS).stat().st_size
    _commit_state(directory, dict(state, step=step, tensors=TENSORS, tensors_bytes=size), [TENSORS])
    prune(root, keep_last)
    return directory


def _commit_state(directory: Path, state: dict[str, Any], names: list[str]) -> None:
    """Write ``state.json`` (the commit marker) with the size and sha256 of each file in ``names``."""
    files = {n: {"bytes": (directory / n).stat().st_size, "sha256": _sha256(directory / n)} for n in names}
    state = dict(state, format=FORMAT, files=files)
    state = json.loads(json.dumps(state, default=str))  # str: YAML dates; the digest is of what is stored
    state["state_sha256"] = _state_digest(state)
    tmp = directory / f".{STATE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    _commit(tmp, directory / STATE)


def write_sharded_checkpoint(
    root: Path, step: int, model: nn.Module, optimizer: Optimizers, state: dict[str, Any], keep_last: int
) -> Path | None:
    """FSDP2: every rank saves its shards of the model and optimizer with ``torch.distributed.checkpoint`` (no
    gather on rank 0); once all have finished, rank 0 commits ``state.json`` and prunes. Collective: call on every
    rank (``state`` matters on rank 0 only). Returns the directory on rank 0, None elsewhere."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    directory = step_dir(root, step)
    main = dist.get_rank() == 0
    if main:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STATE).unlink(missing_ok=True)  # re-writing a step: un-commit it first
        shutil.rmtree(directory / DCP_DIR, ignore_errors=True)
    dist.barrier()
    shards = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.save(shards, checkpoint_id=str(directory / DCP_DIR))  # fsyncs every file it writes
    dist.barrier()  # every rank's shards are on disk before the commit marker
    path = None
    if main:
        if os.environ.get(FAULT_ENV) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        names = sorted(f"{DCP_DIR}/{p.name}" for p in (directory / DCP_DIR).iterdir() if p.is_file())
        _commit_state(directory, dict(state, step=step, layout="dcp"), names)
        prune(root, keep_last)
        path = directory
    dist.barrier()
    return path


def restore_sharded(model: nn.Module, optimizer: Optimizers | None, directory: Path) -> None:
    """Load a :func:`write_sharded_checkpoint` into an FSDP2 model (each rank reads its own shards)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    shards: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        shards["optim"] = get_optimizer_state_dict(model, optimizer)
    dcp.load(shards, checkpoint_id=str(directory / DCP_DIR))
    set_model_state_dict(model, shards["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, shards["optim"])


def _read_dcp_full(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a sharded checkpoint, unsharded, in one process, as flat ``model/...``/``optim/...`` keys."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    full: dict[str, Any] = {}
    # the loader behind torch's own dcp_to_torch_save: rebuilds the saved (nested) state dict from the metadata
    _load_state_dict(full, storage_reader=FileSystemReader(str(directory / DCP_DIR)),
                     planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    tensors = {f"model/{k}": v for k, v in full.get("model", {}).items() if isinstance(v, torch.Tensor)}
    for pname, slots in full.get("optim", {}).get("state", {}).items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pname}/{slot}"] = value
    return tensors


def _read_state(directory: Path) -> dict[str, Any] | None:
    """The committed state of ``directory``, or None when it is incomplete (no marker, unreadable, size mismatch)."""
    try:
        state = json.loads((directory / STATE).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") not in (FORMAT, *LEGACY_FORMATS):
            return None
        if state.get("layout") == "dcp":
            if any((directory / n).stat().st_size != meta["bytes"] for n, meta in state["files"].items()):
                return None
        elif (directory / state["tensors"]).stat().st_size != state["tensors_bytes"]:
            return None
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verify_checkpoint(directory: Path, state: dict[str, Any]) -> None:
    """Raise :class:`CorruptFileError` unless the state's own digest and every file's size and sha256 match."""
    if state.get("format") in LEGACY_FORMATS:
        return  # written before checksums: only the size check of _read_state applies
    if state.get("state_sha256") != _state_digest(state):
        raise CorruptFileError("state.json does not match its sha256 (a field was changed or corrupted)",
                               directory / STATE)
    files = state.get("files")
    if not isinstance(files, dict) or not files or (state.get("layout") != "dcp" and state["tensors"] not in files):
        raise CorruptFileError("state.json lists no checksums for the checkpoint's files", directory / STATE)
    for name, meta in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != meta.get("bytes"):
            raise CorruptFileError(f"missing, or its size differs from the {meta.get('bytes')} bytes recorded", path)
        if _sha256(path) != meta.get("sha256"):
            raise CorruptFileError("sha256 differs from the one recorded in state.json (the file is corrupt)", path)


def list_checkpoints(root: Path) -> list[tuple[int, Path, bool]]:
    """``(step, directory, complete)`` for every step directory under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child, _read_state(child) is not None))
    return sorted(found)


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root``; incomplete ones (crash mid-write) are ignored."""
    complete = [path for _, path, ok in list_checkpoints(root) if ok]
    return complete[-1] if complete else None


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints; drop older ones and incomplete leftovers before them."""
    entries = list_checkpoints(root)
    complete = [step for step, _, ok in entries if ok]
    keep = set(complete[-keep_last:])
    newest = complete[-1] if complete else -1
    for step, path, ok in entries:
        if step in keep or (not ok and step > newest):  # a newer incomplete one may be being written
            continue
        (path / STATE).unlink(missing_ok=True)  # un-commit first, so a crash mid-delete leaves nothing "complete"
        shutil.rmtree(path, ignore_errors=True)


def read_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and JSON state of a complete checkpoint directory, after checking every file's sha256."""
    state = _read_state(directory)
    if state is None:
        raise CorruptFileError("checkpoint is incomplete or not an xmodal checkpoint (no valid state.json)", directory)
    verify_checkpoint(directory, state)
    where = directory / (DCP_DIR if state.get("layout") == "dcp" else state["tensors"])
    try:
        tensors = _read_dcp_full(directory) if state.get("layout") == "dcp" else load_file(str(where))
    except Exception as exc:  # safetensors and torch.distributed.checkpoint raise their own error types
        raise CorruptFileError(f"cannot read tensors: {exc}", where) from exc
    return tensors, state


def restore_checkpoint(
    directory: Path, state: dict[str, Any], model: nn.Module, optimizer: Optimizers | None,
    verify: bool = True,
) -> None:
    """Load the model (and optimizer) state of ``directory`` into ``model``, whichever the layout: the sharded one
    straight into an FSDP2 model's shards, the safetensors one through :func:`restore_state`. ``verify=False``
    skips the checksums when the caller has just checked them (:func:`load_latest`)."""
    if verify:
        verify_checkpoint(directory, state)
    if state.get("layout") == "dcp":
        try:
            restore_sharded(model, optimizer, directory)
        except (KeyError, RuntimeError, ValueError):  # the fall-back of load_latest handles these
            raise
        except Exception as exc:  # torch.distributed.checkpoint's own CheckpointException
            raise CorruptFileError(f"cannot load shards: {exc}", directory / DCP_DIR) from exc
        return
    try:
        tensors = load_file(str(directory / state["tensors"]))
    except Exception as exc:  # safetensors raises its own error types
        raise CorruptFileError(f"cannot read tensors: {exc}", directory / state["tensors"]) from exc
    restore_state(model, optimizer, tensors, state["optimizer"] if optimizer is not None else None)


def load_latest(
    root: Path, restore: Callable[[Path, dict[str, Any]], None]
) -> tuple[Path, dict[str, Any]] | None:
    """Restore the newest checkpoint under ``root`` that reads, verifies and restores without error.

    ``restore(directory, state)`` loads it into the run (model and optimizer through :func:`restore_checkpoint`,
    scheduler, RNG) and raises on a malformed field. A checkpoint that fails is skipped with a warning naming it, and the previous complete one
    is tried; restoring the next one overwrites whatever the failed attempt had loaded. Returns ``(directory,
    state)``, or None when ``root`` holds no complete checkpoint; raises :class:`CorruptFileError` naming every
    skipped one when all of them fail.
    """
    complete = [path for _, path, ok in list_checkpoints(root) if ok]
    skipped: list[str] = []
    for path in reversed(complete):
        try:
            state = _read_state(path)
            if state is None:
                raise CorruptFileError("state.json is no longer valid", path)
            verify_checkpoint(path, state)
            restore(path, state)
            return path, state
        except ConfigError:  # the run does not fit the checkpoint (e.g. the process count): not a corruption
            raise
        except (CorruptFileError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            skipped.append(f"{path} ({exc})")
            warnings.warn(f"skipping checkpoint {path}: {exc}; falling back to the previous complete one",
                          stacklevel=2)
    if skipped:
        raise CorruptFileError("no checkpoint could be restored: " + "; ".join(skipped), root)
    return None


def load_model_weights(directory: Path, model: nn.Module) -> dict[str, Any]:
    """Load only the model weights of a checkpoint (e.g. for evaluation); returns the JSON state."""
    tensors, state = read_checkpoint(directory)
    restore_state(model, None, tensors, None)
    return state
