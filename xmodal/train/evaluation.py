"""Evaluation during training, the best checkpoint, and the files that make a run directory self-contained.

- ``train.eval_every: N`` runs the task's evaluation every N steps and at the end, on rank 0 (every rank under
  FSDP, whose shards all take part in the forward passes); the other ranks wait at a barrier. Under FSDP the
  evaluation of a generative task (one with ``generate``: its evaluation samples through methods other than
  the forward, which FSDP2's hooks do not gather for) runs on full weights (``distributed.full_weights``).
- The best evaluation by the primary metric (``eval.primary``, else the task's) is kept under ``best/``: a
  symlink, replaced atomically, to ``best-<step>/``, whose files are hard links (copies where links fail) of that
  step's checkpoint (its ``dcp/`` folder too), plus ``best.json`` with the step and the metrics.
- ``metrics.json``, written by every run: ``{"primary", "model": {metric: value}, "baselines": {name: {metric:
  value}}, "split", "n"}`` for the model at the end of training.
- ``recipe.yaml`` (the resolved recipe, after overrides) and one ``<name>.json`` per task artifact (label maps,
  vocabularies): with the safetensors checkpoints, everything needed to load the run offline.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Sized
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from torch import nn

from xmodal.errors import ConfigError
from xmodal.tasks.base import TaskBundle
from xmodal.train import distributed as xdist

METRICS = "metrics.json"
EVAL_LOG = "eval_log.jsonl"  # one line per evaluation: {"step", metric: value}: the learning curves
RECIPE = "recipe.yaml"
ARTIFACTS = "artifacts.json"  # the names of the task artifacts saved beside it, reloaded as saved
BEST = "best"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_run_files(out: Path, recipe: dict[str, Any], bundle: TaskBundle) -> None:
    """``recipe.yaml``, the task's artifacts (``<name>.json``) and their names (``artifacts.json``) in the run
    directory."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / RECIPE, yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
    for name, value in bundle.artifacts.items():
        _atomic_text(out / f"{name}.json", json.dumps(value, indent=1, ensure_ascii=False) + "\n")
    _atomic_text(out / ARTIFACTS, json.dumps(sorted(bundle.artifacts)) + "\n")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)


class RunEvaluator:
    """Runs ``bundle.evaluate`` when due, keeps the best checkpoint and writes ``metrics.json``."""

    def __init__(self, bundle: TaskBundle, out: Path, env: xdist.DistEnv, every: int, strategy: str,
                 primary: str | None = None, resumed: bool = False) -> None:
        self.bundle, self.out, self.env, self.every = bundle, out, env, every
        self.enabled = bundle.evaluate is not None and bundle.val_set is not None
        self.primary = primary or bundle.primary
        self.all_ranks = strategy == "fsdp" and env.distributed
        # a forward-only evaluation keeps FSDP2's per-block gathering (and its memory bound)
        self.gather = self.all_ranks and bundle.generate is not None
        self.best: float | None = None
        self.stale = 0  # evaluations since the primary metric last improved (early stopping)
        self.last: dict[str, float] = {}
        if not resumed and env.is_main:  # a fresh run into an old folder must not inherit its best
            if (out / BEST).is_symlink():
                (out / BEST).unlink()
            for old in out.glob(f"{BEST}-*"):
                shutil.rmtree(old, ignore_errors=True)
        kept = out / BEST / "best.json"
        if resumed and kept.is_file() and self.primary is not None:  # a resumed run competes with its best so far
            previous = json.loads(kept.read_text(encoding="utf-8"))
            if previous.get("primary") == self.primary:
                self.best = float(previous["value"])
        if not resumed and env.is_main and (out / EVAL_LOG).exists():
            (out / EVAL_LOG).unlink()

    def due(self, step: int, total: int) -> bool:
        return self.enabled and self.every > 0 and step % self.every == 0 and step < total

    def evaluate(self, model: nn.Module, step: int, checkpoint: Path | None) -> dict[str, float]:
        """Evaluate (collective: call on every rank); rank 0 returns the metrics and keeps the best."""
        from xmodal.train import checkpoint as ckpt

        metrics: dict[str, float] = {}
        if self.env.is_main or self.all_ranks:
            inner = xdist.unwrap(model)
            assert self.bundle.evaluate is not None and self.bundle.val_set is not None  # self.enabled
            was_training = inner.training
            rng = ckpt.rng_state()  # evaluation must not move training's random streams (bit-exact resume)
            inner.eval()
            weights = xdist.full_weights(inner) if self.gather else contextlib.nullcontext()
            with torch.no_grad(), weights:
                metrics = {k: float(v) for k, v in self.bundle.evaluate(inner, self.bundle.val_set).items()}
            inner.train(was_training)
            ckpt.set_rng_state(rng)
        if self.env.is_main:
            self.last = metrics
            self.stale = 0 if self._keep_best(step, metrics, checkpoint) else self.stale + 1
            with open(self.out / EVAL_LOG, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"step": step, **metrics}) + "\n")
        self.stale = int(xdist.broadcast_object(self.stale))  # every rank stops early together
        return metrics if self.env.is_main else {}

    def _keep_best(self, step: int, metrics: dict[str, float], checkpoint: Path | None) -> bool:
        """Keep this step's checkpoint as ``best/`` when its primary metric is the best so far; True if so."""
        if self.primary is None or checkpoint is None:
            return False
        if self.primary not in metrics:
            raise ConfigError(f"eval.primary: {self.primary!r} is not a metric of this task; it reports "
                              f"{', '.join(sorted(metrics))}")
        if not checkpoint.is_dir():
            # pruned at once: an older step than the kept checkpoints of an earlier run in this folder
            warnings.warn(f"{checkpoint} is gone; the best checkpoint of step {step} is not kept", stacklevel=2)
            return False
        value = metrics[self.primary]
        sign = 1.0 if self.bundle.higher_is_better else -1.0
        if not math.isfinite(value) or (self.best is not None and sign * value <= sign * self.best):
            return False
        self.best = value
        target = self.out / f"{BEST}-{step:09d}"
        tmp = self.out / f".{target.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in sorted(checkpoint.rglob("*")):  # a sharded (FSDP2) checkpoint keeps its files in dcp/
            if f.is_file():
                (tmp / f.relative_to(checkpoint)).parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(f, tmp / f.relative_to(checkpoint))
        _atomic_text(tmp / "best.json", json.dumps({"step": step, "primary": self.primary, "value": value,
                                                     "metrics": metrics}, indent=1) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        link = self.out / f".{BEST}.link"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.name)
        previous = os.path.realpath(self.out / BEST) if (self.out / BEST).is_symlink() else None
        os.replace(link, self.out / BEST)  # atomic: best/ is always a complete checkpoint
        if previous and Path(previous) != target.resolve():
            shutil.rmtree(previous, ignore_errors=True)
        return True

    def write_metrics(self) -> dict[str, Any]:
        """``metrics.json`` of the last evaluation (rank 0)."""
        val = self.bundle.val_set
        baselines: dict[str, dict[str, float]] = {}
        if self.last and self.bundle.baselines is not None and val is not None:
            baselines = {name: {k: float(v) for k, v in row.items()}
                         for name, row in self.bundle.baselines(val).items()}
        doc = {"primary": self.primary, "model": self.last, "baselines": baselines, "split": self.bundle.split,
               "n": len(cast(Sized, val)) if val is not None else 0}  # a map-style dataset: it has a length
        _atomic_text(self.out / METRICS, json.dumps(doc, indent=1) + "\n")
        return doc
