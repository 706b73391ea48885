"""``xmodal fit``: from a folder or table to a trained, evaluated model within a wall-time budget.

The plan (:func:`xmodal.automl.make_plan`) is written as ``recipe.yaml``; ``xmodal train recipe.yaml``
reproduces the fused run bit for bit. The budget covers everything from the start of the process to the
report: planning and decoding are measured as they happen; the rest, less a reserve for the report and the
exit, goes first to one run per input modality alone (a share of weight 1 each against the fused run's 2,
decided once that run is built and its step and evaluation times are measured), then to the fused run,
which also gets what an early-stopped run left. The clock stops each run
(``train.max_seconds``); the learning rate is constant, so a run stopped at step S is the run of
``max_steps: S``, which is what the recipe then says.

Held-out split: ``data.val_fraction`` of each class (stratified), drawn with ``data.seed``; every run of one
fit shares it. Early stopping: ``train.patience`` evaluations without a better primary metric; the best
checkpoint (``best/``) is the model that is reported.
"""

from __future__ import annotations

import copy
import importlib
import json
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from xmodal.errors import ConfigError

EVALS_PER_RUN = 10  # evaluations per run (learning curves, early stopping)
MIN_EVAL_EVERY = 4  # each evaluation also writes a checkpoint: not more often than this many steps
PATIENCE = 6  # evaluations without improvement before a run stops
REPORT_RESERVE = 0.08  # of the budget, kept for the last evaluations, the report and the exit
MAX_EPOCHS = 300  # a cap for tiny tables, where the budget would allow thousands of epochs


@dataclass
class RunSummary:
    """One trained run of a fit (the fused model, or one input alone)."""

    name: str
    fields: list[str]
    out: Path
    metrics: dict[str, float]
    steps: int
    planned_steps: int
    seconds: float
    samples_per_second: float
    parameters: int
    stopped: str | None
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds: build, measure, train, evaluate
    curve: list[dict[str, float]] = field(default_factory=list)  # eval_log.jsonl rows
    loss: list[dict[str, float]] = field(default_factory=list)  # log.csv rows


# Encoder sizes for budgets of minutes on a CPU (the families' defaults are sized for real training). The
# transformer keeps its default positional table (1024 steps): it sizes no computation, and a shorter one
# refuses every MIDI file of more notes (a 4-part chorale has about 250 in 20 seconds).
COMPACT = {"cnn1d": {"width": 64}, "cnn2d": {"width": 64}, "cnn3d": {"width": 32},
           "transformer": {"width": 64, "depth": 1}, "ssm": {"width": 64, "depth": 1},
           "rnn": {"width": 64}, "pointnet": {"width": 128}, "gnn": {"width": 64, "depth": 2}}
COMPACT_BELOW_S = 900  # budgets under this many seconds get compact encoders and 32 x 32 images


def _process_age() -> float:
    """Seconds since this process started (Linux /proc), 0 where unknown."""
    import os

    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


_OFFSET = _process_age() - time.perf_counter()


def _now() -> float:
    """Seconds since this process started: the budget covers the command's wall time, imports included."""
    return time.perf_counter() + _OFFSET


def _compact(recipe: dict[str, Any]) -> None:
    for entry in recipe["model"]["encoders"].values():
        for key, value in COMPACT.get(entry.get("family"), {}).items():
            entry.setdefault(key, value)
    recipe["data"].setdefault("image_size", [32, 32])


def _train_section(batch_size: int, seed: int, steps: int, every: int) -> dict[str, Any]:
    # A constant learning rate (min_lr_ratio 1): a run stopped by the clock at step S is then exactly the run
    # of max_steps S, which is what the written recipe says.
    return {"max_steps": steps, "batch_size": batch_size, "lr": 1e-3, "min_lr_ratio": 1.0, "seed": seed,
            "eval_every": every, "patience": PATIENCE, "log_every": max(1, min(every, 10)),
            "checkpoint_every": 0, "keep_last": 2, "tensorboard": False, "progress": False,
            "threads": torch.get_num_threads()}


def _measure(bundle: Any, batch_size: int) -> tuple[float, float]:
    """(seconds per training step, seconds per evaluation) on a copy of the model, so that the real run's
    weights, optimizer and random streams are untouched."""
    from xmodal.train.loop import to_device

    model = copy.deepcopy(bundle.model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    n = len(bundle.train_set)
    times = []
    with torch.random.fork_rng():
        for k in range(2):  # the first step pays one-time costs (thread pools, lazy loading): not counted
            t = _now()
            idx = [(k * batch_size + i) % n for i in range(batch_size)]
            batch = to_device(bundle.collate([bundle.train_set[i] for i in idx]), torch.device("cpu"))
            loss = bundle.loss(model(batch), batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(_now() - t)
        t = _now()
        model.eval()
        with torch.no_grad():
            bundle.evaluate(model, bundle.val_set)
        eval_seconds = _now() - t
    return max(times[1], 1e-4), eval_seconds


def _restrict(recipe: dict[str, Any], column: str) -> dict[str, Any]:
    """The same plan with one input column."""
    one = copy.deepcopy(recipe)
    one["data"]["fields"] = {column: recipe["data"]["fields"][column]}
    one["model"]["encoders"] = {column: recipe["model"]["encoders"][column]}
    return one


def _dump(path: Path, recipe: dict[str, Any]) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _run(name: str, recipe: dict[str, Any], out: Path, seconds: float | Any, env: Any) -> tuple[RunSummary, Any]:
    """Build and train one run within ``seconds`` (wall time, building and its evaluations included): the
    clock stops training (``train.max_seconds``), and the recipe written beside it then holds the steps
    done, so that ``xmodal train`` repeats the run exactly. Returns the summary and the bundle (its model
    holding the best checkpoint's weights on rank 0)."""
    from xmodal.tasks.base import build_task
    from xmodal.train import distributed as xdist
    from xmodal.train.checkpoint import load_model_weights
    from xmodal.train.evaluation import EVAL_LOG
    from xmodal.train.loop import _read_history, seed_everything
    from xmodal.train.loop import train as run_training

    start = _now()
    seed = int(recipe["data"].get("seed", 0))
    seed_everything(seed)  # as ``xmodal train`` does before building: the same initial weights
    bundle = build_task(recipe)
    phases = {"build": _now() - start}
    n_train = len(bundle.train_set)  # type: ignore[arg-type]  # the pipeline's datasets are map-style, sized
    n_val = len(bundle.val_set) if bundle.val_set is not None else 0  # type: ignore[arg-type]
    per_rank = n_train // env.world_size
    batch_size = max(1, min(int(recipe["train"]["batch_size"]), per_rank))
    step_s, eval_s = _measure(bundle, batch_size)
    phases["measure"] = _now() - start - phases["build"]
    phases["eval_estimate"] = eval_s
    if callable(seconds):  # the share is decided once one-time costs (imports, tokenizers) are paid
        seconds = seconds(eval_s) + (_now() - start)
    # after the clock stops training: the final evaluation, its checkpoint, the baselines (which read the
    # targets of every training sample: a pass over the training set) and reading the best checkpoint
    tail = eval_s * (2.5 + n_train / max(1, n_val)) + 0.5
    train_s = seconds - (_now() - start) - tail
    expected = max(1, int(train_s / (step_s + 1.5 * eval_s / EVALS_PER_RUN)))
    limit = max(1, min(expected * 4, MAX_EPOCHS * max(1, per_rank // batch_size)))
    every = max(MIN_EVAL_EVERY, expected // EVALS_PER_RUN)
    decided = cast(tuple[int, int, float], xdist.broadcast_object((limit, every, train_s)))  # rank 0 decides
    limit, every, train_s = decided
    recipe["train"] = _train_section(batch_size, seed, limit, every)
    guarded = copy.deepcopy(recipe)
    guarded["train"]["max_seconds"] = max(0.1, train_s)
    t = _now()
    result = run_training(bundle, guarded, out_dir=out / "run", env=env)
    phases["train"] = _now() - t
    if result.stopped and result.stopped.startswith("time limit"):
        recipe["train"]["max_steps"] = result.steps  # the same run, now bounded by steps
    if env.is_main:
        _dump(out / "recipe.yaml", recipe)
    t = _now()
    model = bundle.model
    best = out / "run" / "best"
    metrics: dict[str, float] = dict(result.metrics)
    curve: list[dict[str, float]] = []
    if env.is_main:
        if best.exists():
            load_model_weights(best.resolve(), model)
            metrics = json.loads((best / "best.json").read_text(encoding="utf-8"))["metrics"]
        log = out / "run" / EVAL_LOG
        curve = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    phases["best"] = _now() - t
    summary = RunSummary(name, list(recipe["data"]["fields"]), out, metrics, result.steps, limit,
                         result.train_seconds, result.samples_per_second,
                         sum(p.numel() for p in model.parameters()), result.stopped, phases, curve,
                         _read_history(out / "run" / "log.csv") if env.is_main else [])
    return summary, bundle


def fit(data: str | Path, target: str | None, time_budget: float = 120.0, out: str | Path | None = None,
        seed: int = 0, sample: int = 32, from_process_start: bool = False) -> dict[str, Any]:
    """Plan, train (the fused model and each input alone), evaluate and report within ``time_budget`` seconds
    (counted from the call, or with ``from_process_start`` from the start of the process, as the command
    does); returns the ``metrics.json`` document. Call it on every rank under torchrun."""
    import yaml

    from xmodal.automl import make_plan
    from xmodal.automl.recipe import write_recipe
    from xmodal.report.fit import write_report
    from xmodal.train import distributed as xdist

    start = 0.0 if from_process_start else _now()
    if time_budget <= 0:
        raise ConfigError(f"--time-budget: must be > 0 seconds, got {time_budget}")
    out = Path(out or "runs/fit")
    # The optimizer's first use imports torch._dynamo (seconds on a busy machine): import it while the data is
    # read and planned, instead of inside the first run's share
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True).start()
    env = xdist.init_distributed()
    try:
        plan = make_plan(data, target, sample)
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_recipe(plan, out / "recipe.yaml")
        xdist.barrier()
        recipe = yaml.safe_load((out / "recipe.yaml").read_text(encoding="utf-8"))
        recipe["data"]["seed"] = seed
        if time_budget < COMPACT_BELOW_S:
            _compact(recipe)
        planned = _now() - start
        reserve = max(REPORT_RESERVE * time_budget, 3.0)  # the report, baselines and the process's exit
        train_left = time_budget - reserve - planned
        singles = [c for c in plan.inputs] if len(plan.inputs) > 1 and plan.task != "contrastive_retrieval" else []
        weight = 2 + len(singles)
        if train_left <= 0:
            raise ConfigError(f"--time-budget: {time_budget:g} s is used up by reading and planning the data "
                              f"({planned:.1f} s); give more time")
        # each input alone first (weight 1 each), then the fused model (weight 2), which also gets whatever an
        # early-stopped run left unused; every share is decided once its run is built and measured
        runs = []
        for i, column in enumerate(singles):
            if not xdist.broadcast_object(time_budget - reserve - (_now() - start) > 0):  # rank 0's clock
                break

            def single_share(eval_s: float, left_weight: float = weight - i) -> float:
                return (time_budget - reserve - (_now() - start)) / left_weight

            single, _ = _run(f"{column} alone", _restrict(recipe, column), out / "alone" / column, single_share, env)
            runs.append(single)

        def fused_share(eval_s: float) -> float:
            nonlocal reserve
            reserve += 1.5 * eval_s  # the report's pass over the held-out set
            return time_budget - reserve - (_now() - start)

        fused, bundle = _run("fused", recipe, out, fused_share, env)
        runs.insert(0, fused)
        doc: dict[str, Any] = {}
        if env.is_main:
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            doc = write_report(out, plan, bundle, runs, budget=time_budget, elapsed=_now() - start,
                               planning_seconds=planned, peak_memory_mib=peak_mib)
        xdist.barrier()
        return doc
    finally:
        xdist.shutdown(env)
