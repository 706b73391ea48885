"""Loading a trained run: the task rebuilt from the run directory's resolved recipe (or a recipe file), and the
weights of its best, last or a given checkpoint. Offline: nothing but the run directory and the task's data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xmodal.errors import ConfigError
from xmodal.tasks.base import TaskBundle


def resolve_run(source: Path) -> tuple[dict[str, Any], Path | None]:
    """``(recipe, run directory or None)`` of a run directory (its ``recipe.yaml``) or a recipe file."""
    from xmodal.config.recipe import load_recipe
    from xmodal.train.evaluation import RECIPE

    if source.is_dir():
        if not (source / RECIPE).is_file():
            raise ConfigError(f"{source}: not a run directory (no {RECIPE}); give a run directory or a recipe")
        return load_recipe(source / RECIPE), source
    if not source.is_file():
        raise ConfigError(f"{source}: no such run directory or recipe file")
    return load_recipe(source), None


def checkpoint_dir(which: str, run: Path | None) -> Path:
    """The checkpoint directory named by ``best``, ``last`` or a path."""
    from xmodal.train import checkpoint as ckpt
    from xmodal.train.evaluation import BEST

    if which in ("best", "last"):
        if run is None:
            raise ConfigError(f"--checkpoint {which}: needs a run directory; with a recipe, give a checkpoint path")
        if which == "best":
            if not (run / BEST / ckpt.STATE).is_file():
                raise ConfigError(f"--checkpoint best: {run / BEST} holds no checkpoint (train with train.eval_every "
                                  "or train.evaluate on a task with a primary metric)")
            return run / BEST
        latest = ckpt.find_latest(run / "checkpoints")
        if latest is None:
            raise ConfigError(f"--checkpoint last: no complete checkpoint in {run / 'checkpoints'}")
        return latest
    path = Path(which)
    if not (path / ckpt.STATE).is_file():
        raise ConfigError(f"--checkpoint {which}: not a checkpoint directory (no {ckpt.STATE})")
    return path


def saved_artifacts(run: Path) -> dict[str, Any] | None:
    """The task artifacts a run directory saved (label maps, vocabularies), as saved; None for a run written
    before their names were recorded (``artifacts.json``)."""
    from xmodal.config.loaders import loads_json, read_utf8
    from xmodal.errors import CorruptFileError, DataError
    from xmodal.train.evaluation import ARTIFACTS

    if not (run / ARTIFACTS).is_file():
        return None
    names = loads_json(read_utf8(run / ARTIFACTS, CorruptFileError), run / ARTIFACTS)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CorruptFileError("expected a list of artifact names", source=run / ARTIFACTS)
    out = {}
    for name in names:
        path = run / f"{name}.json"
        if not path.is_file():
            raise DataError(f"the run saved artifact {name!r} but {path.name} is missing", source=path)
        out[name] = loads_json(read_utf8(path, CorruptFileError), path)
    return out


def load_trained(source: Path, which: str = "best") -> tuple[TaskBundle, dict[str, Any], Path]:
    """The task's bundle with the chosen checkpoint's weights loaded (eval mode), its recipe and checkpoint.

    From a run directory the task is built with the artifacts the run saved (label maps, vocabularies), not
    ones derived from the data again: a data folder that changed since training cannot reorder the classes."""
    import torch

    from xmodal.errors import DataError
    from xmodal.tasks.base import build_task
    from xmodal.train import checkpoint as ckpt

    recipe, run = resolve_run(source)
    directory = checkpoint_dir(which, run)
    torch.manual_seed(0)  # the weights are replaced; this only makes building deterministic
    bundle = build_task(recipe, saved_artifacts(run) if run is not None else None)
    try:
        ckpt.load_model_weights(directory, bundle.model)
    except RuntimeError as exc:  # torch's state-dict mismatch: the model built from the data has other sizes
        raise DataError(f"the checkpoint does not fit the model built from the data now ({exc}); the data "
                        "changed since training", source=directory) from exc
    bundle.model.eval()
    return bundle, recipe, directory
