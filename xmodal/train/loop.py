"""The training loop: one function, :func:`train`, driven by a :class:`~xmodal.tasks.base.TaskBundle`.

What it guarantees:
- Reproducible and resumable: the data order of epoch ``e`` depends only on ``(seed, e, rank, world size)``, and
  each sample's augmentation only on ``(seed, e, index)``, whatever ``num_workers`` is (``train/sampling.py``);
  a checkpoint records the position inside the epoch and every rank's RNG state, so a run killed and resumed
  from its last checkpoint ends with the same weights as one that was never interrupted (tested bit for bit).
- Gradient accumulation that is exact for contrastive losses (``bundle.coupled_loss``): the GradCache scheme of
  Gao et al. 2021 ("Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"). Summing
  micro-batch InfoNCE losses would only contrast samples within a micro-batch, a different (weaker) objective.
- AdamW (no weight decay on biases, norm gains and the logit scale) with linear warm-up and cosine decay,
  autocast mixed precision (bf16, fp16 with a grad scaler), global gradient-norm clipping, a typed error naming
  the step when the loss is NaN or infinite.
- Tasks that define their own step (``bundle.phases``: a GAN's discriminator and generator) get one AdamW and
  schedule per phase, stepped in turn (``train/phases.py``) with all of the above; ``bundle.after_step`` (an EMA
  kept inside the model, hence in the checkpoint) runs after every step, and ``bundle.generate`` writes samples
  to ``samples/step_<step>/`` every ``train.sample_every`` steps without moving the training random streams.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.errors import ConfigError, CorruptFileError, NonFiniteError
from xmodal.tasks.base import Batch, Outputs, TaskBundle
from xmodal.train import checkpoint as ckpt
from xmodal.train import distributed as xdist
from xmodal.train import phases as xphases
from xmodal.train import streaming
from xmodal.train.config import TrainConfig, train_config_from
from xmodal.train.evaluation import RunEvaluator, write_run_files
from xmodal.train.logging import RunLogger, progress_bar
from xmodal.train.optim import build_adamw
from xmodal.train.sampling import epoch_loader

RESULT_NAME = "train_result.json"
SAMPLES = "samples"  # <run>/samples/step_<step>/: what bundle.generate wrote during training


@dataclass
class TrainResult:
    """What a run produced. ``history`` holds the CSV log rows (step, loss, lr, ...) of the whole run."""

    out_dir: Path
    steps: int
    epochs: float
    final_loss: float | None
    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    resumed_from: int | None = None
    stopped: str | None = None  # why training ended before its planned steps, if it did
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Call before building the model so every rank inits alike."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- batches
def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values are kept."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        if all(isinstance(v, (int, float, str)) for v in batch):  # ids, paths: one scan, not a call per entry
            return batch
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def split_batch(batch: Any, size: int, parts: int) -> list[Any]:
    """Split a collated batch of ``size`` samples into ``parts`` equal micro-batches.

    Tensors whose first dimension is ``size`` are chunked along it, lists/tuples of length ``size`` are sliced,
    dicts are split value by value; anything else (a shared mask length, a string) is given to every part.
    Padded tensors keep their padded length in every part, which masks make harmless.
    """
    step = size // parts
    if isinstance(batch, dict):
        split = {k: split_batch(v, size, parts) for k, v in batch.items()}
        return [{k: split[k][i] for k in batch} for i in range(parts)]
    if isinstance(batch, torch.Tensor) and batch.ndim >= 1 and batch.shape[0] == size:
        return list(batch.split(step, dim=0))
    if isinstance(batch, (list, tuple)) and len(batch) == size:
        return [batch[i * step : (i + 1) * step] for i in range(parts)]
    return [batch] * parts


def _per_sample_keys(outputs: Outputs, micro_size: int) -> tuple[list[str], list[str]]:
    """Outputs with one row per sample (concatenated across micro-batches) and shared ones (``logit_scale``)."""
    per_sample, shared = [], []
    for key, value in outputs.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if value.ndim >= 1 and value.shape[0] == micro_size:
            per_sample.append(key)
        else:
            shared.append(key)
    return per_sample, shared


# ------------------------------------------------------------------------------------------ train steps
def _check_finite(loss: torch.Tensor, step: int) -> float:
    """Mean loss over ranks as a float; every rank raises together when it is NaN or infinite."""
    value = xdist.all_reduce_mean(loss.detach().float()).item()
    if not math.isfinite(value):
        raise NonFiniteError(
            f"training loss is {value}: check the inputs of this batch, lower train.lr, "
            "or use precision fp32",
            source=f"step {step}",
        )
    return value


def _rng_snapshot(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _rng_restore(snapshot: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(snapshot[0])
    if snapshot[1] is not None:
        torch.cuda.set_rng_state(snapshot[1], device)


def accumulate_naive(
    model: nn.Module,
    loss_fn: Callable[[Outputs, Batch], torch.Tensor],
    micro_batches: list[Batch],
    *,
    step: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    sync: bool = False,
) -> float:
    """Classic accumulation: backprop the mean of the micro-batch losses. Exact for losses that are means over
    independent samples; for contrastive losses it optimises a different objective (see :func:`accumulate_gradcache`)."""
    total: torch.Tensor | float = 0.0
    n = len(micro_batches)
    for i, micro in enumerate(micro_batches):
        with xdist.no_grad_sync(model, enabled=sync and i < n - 1):
            with autocast():
                loss = loss_fn(model(micro), micro) / n
            total = total + loss.detach().float()
            scale(loss).backward()
    return _check_finite(torch.as_tensor(total), step)


def accumulate_gradcache(
    model: nn.Module,
    loss_fn: Callable[[Outputs, Batch], torch.Tensor],
    micro_batches: list[Batch],
    full_batch: Batch,
    *,
    step: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    sync: bool = False,
    device: torch.device | None = None,
    micro_size: int | None = None,
) -> float:
    """GradCache accumulation for losses that couple the samples of a batch; gradients equal the full batch's.

    1. Forward every micro-batch without autograd and cache its outputs (and the RNG state, so dropout replays).
    2. Compute the loss on the concatenated outputs and backprop it to those outputs only: ``dL/d(outputs)``.
    3. Forward each micro-batch again with autograd and backprop ``<outputs, cached gradient>``; by the chain
       rule the parameter gradients sum to those of the full batch. Outputs shared by all micro-batches (a
       learnable ``logit_scale``) take their gradient once, in the last micro-batch, whose backward is the one
       that synchronises under DDP (so every parameter has a gradient in the synchronised pass).

    Exact for models without cross-sample interactions in the forward; BatchNorm normalises each micro-batch by
    its own statistics (as any accumulation does), and its running statistics are updated once per micro-batch.
    """
    device = device or torch.device("cpu")
    n = len(micro_batches)
    if n == 1:  # nothing to accumulate: the plain step is the same computation with one forward instead of two
        with autocast():
            loss = loss_fn(model(micro_batches[0]), full_batch)
        value = _check_finite(loss, step)
        scale(loss).backward()
        return value
    snapshots, cached = [], []
    # The caching pass must not update buffers (BatchNorm running statistics): the recomputation will.
    buffers = [b.detach().clone() for b in model.buffers()]
    with torch.no_grad():
        for micro in micro_batches:
            snapshots.append(_rng_snapshot(device))
            with autocast():
                cached.append(model(micro))
        for buf, saved in zip(model.buffers(), buffers):
            buf.copy_(saved)
    del buffers
    if micro_size is None:  # the first output with a batch axis tells
        micro_size = next(v.shape[0] for v in cached[0].values() if isinstance(v, torch.Tensor) and v.ndim >= 1)
    per_sample, shared = _per_sample_keys(cached[0], micro_size)
    reps: dict[str, Any] = dict(cached[0])
    for key in per_sample:
        reps[key] = torch.cat([out[key] for out in cached], dim=0).detach().requires_grad_(True)
    for key in shared:
        reps[key] = cached[0][key].detach().requires_grad_(True)
    with autocast():
        loss = loss_fn(reps, full_batch)
    value = _check_finite(loss, step)
    scale(loss).backward()
    grads = {k: reps[k].grad for k in per_sample + shared if reps[k].grad is not None}
    del cached, reps, loss

    for i, micro in enumerate(micro_batches):
        last = i == n - 1
        with xdist.no_grad_sync(model, enabled=sync and not last):
            _rng_restore(snapshots[i], device)
            with autocast():
                out = model(micro)
            terms = []
            for key in per_sample:
                if key in grads:
                    rows = grads[key][i * micro_size : (i + 1) * micro_size]
                    terms.append((out[key] * rows.to(out[key].dtype)).sum())
            if last:
                for key in shared:
                    if key in grads:
                        terms.append((out[key] * grads[key].to(out[key].dtype)).sum())
            if terms:
                torch.stack([t.float() for t in terms]).sum().backward()
    return value


# --------------------------------------------------------------------------------------------- helpers
def cosine_with_warmup(total_steps: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/(warmup+1) to 1 over ``warmup`` steps, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _autocast_factory(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise ConfigError(f"train.precision: {precision} autocast is not available on {device.type}; use fp32")
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _epoch_batches(
    dataset: Dataset, bundle: TaskBundle, tc: TrainConfig, env: xdist.DistEnv, epoch: int, skip: int, steps: int
) -> Iterator[Batch]:
    """Batches ``skip .. steps-1`` of epoch ``epoch`` for this rank: order and augmentation fixed by (seed, epoch)
    (a shard stream: by the shards' order, ``train/streaming.py``)."""
    if streaming.is_stream(dataset):
        yield from streaming.stream_batches(dataset, bundle.collate, seed=tc.seed, epoch=epoch, rank=env.rank,
                                            world_size=env.world_size, batch_size=tc.batch_size, skip=skip,
                                            steps=steps, num_workers=tc.num_workers)
        return
    yield from epoch_loader(dataset, bundle.collate, seed=tc.seed, epoch=epoch, rank=env.rank,
                            world_size=env.world_size, batch_size=tc.batch_size, skip=skip, steps=steps,
                            num_workers=tc.num_workers)


def _naming_step(batches: Iterator[Batch], where: Callable[[], tuple[str, str]]) -> Iterator[Batch]:
    """``batches``, with a NaN found while collating (``xmodal.data.sample.collate`` checks) re-raised naming
    the step and position ``where()`` gives."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except NonFiniteError as exc:
            source, position = where()
            raise NonFiniteError(f"{position} {exc}", source=source) from exc
        yield batch


def _primary(recipe: dict[str, Any]) -> str | None:
    section = recipe.get("eval")
    return section.get("primary") if isinstance(section, dict) else None


def _gather_rng(env: xdist.DistEnv) -> list[dict[str, Any]]:
    state = ckpt.rng_state()
    if not env.distributed:
        return [state]
    import torch.distributed as dist

    states: list[Any] = [None] * env.world_size
    dist.all_gather_object(states, state)
    return states


def _check_world_size(state: dict[str, Any], env: xdist.DistEnv, tc: TrainConfig) -> None:
    """Checkpoint fields the resume relies on are integers, and the process count is the saved one.

    Another process count changes the batches per epoch, hence the schedule of an ``epochs`` run, the data
    order and the random streams: an error unless ``train.elastic_resume`` asks for it (then a warning).
    """
    for key in ("step", "epoch", "batch_in_epoch", "world_size"):
        if isinstance(state.get(key), bool) or not isinstance(state.get(key), int) or state[key] < 0:
            raise CorruptFileError(f"state.json field {key!r} is {state.get(key)!r}, not a count")
    saved = state["world_size"]
    if saved == env.world_size:
        return
    message = (f"the checkpoint was saved by {saved} process(es) and this run has {env.world_size}: the number of "
               "batches per epoch (and so the schedule of an epochs-based run), the data order and the random "
               "streams differ from an uninterrupted run")
    if not tc.elastic_resume:
        raise ConfigError(f"{message}; resume with the same number of processes, or set train.elastic_resume=true")
    warnings.warn(message, stacklevel=3)


def _out_of_time(t0: float, limit: float, env: xdist.DistEnv) -> bool:
    """Whether ``limit`` seconds have passed since ``t0`` (rank 0's clock decides, so that ranks stop together)."""
    late = time.perf_counter() - t0 >= limit
    return bool(xdist.broadcast_object(late)) if env.distributed else late


def _read_history(path: Path) -> list[dict[str, float]]:
    import csv

    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _optimizer_step(model: nn.Module, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler | None,
                    tc: TrainConfig) -> float:
    """The single-loss step after backward: unscale, clip (returns the global gradient norm), step, schedule."""
    xdist.reduce_replicated_grads(model)
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = float("nan")
    if tc.grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        grad_norm = float(norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        # fp16: the grad scaler skips the optimizer step while it calibrates; the schedule goes on
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
        scheduler.step()
    return grad_norm


def write_samples(bundle: TaskBundle, model: nn.Module, directory: Path, tc: TrainConfig, env: xdist.DistEnv) -> None:
    """``bundle.generate`` of ``train.sample_n`` samples from ``train.seed`` into ``directory`` (rank 0; every
    rank takes part under FSDP2, on full weights (``distributed.full_weights``: sampling runs methods other
    than the forward), the others writing to a scratch folder), leaving the random streams as they were so
    that sampling does not change training."""
    import tempfile

    assert bundle.generate is not None
    sharded = tc.strategy == "fsdp" and env.distributed
    if not (env.is_main or sharded):
        xdist.barrier()
        return
    inner = xdist.unwrap(model)
    rng = ckpt.rng_state()
    inner.eval()
    with contextlib.ExitStack() as stack:
        target = directory if env.is_main else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        target.mkdir(parents=True, exist_ok=True)
        if sharded:
            stack.enter_context(xdist.full_weights(inner))
        with torch.no_grad():
            bundle.generate(inner, tc.sample_n, tc.seed, target)
    inner.train()
    ckpt.set_rng_state(rng)
    xdist.barrier()


# ---------------------------------------------------------------------------------------------- train
def train(
    bundle: TaskBundle,
    cfg: dict[str, Any] | TrainConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    env: xdist.DistEnv | None = None,
) -> TrainResult:
    """Train ``bundle.model`` as the recipe ``cfg`` (whole recipe or its validated ``train:`` section) says.

    ``out_dir`` (default ``train.out_dir``, then ``runs/<task>``) receives ``checkpoints/``, ``log.csv``,
    ``tensorboard/`` and ``train_result.json``. With ``resume`` the newest complete checkpoint there is loaded
    and training continues from it (a fresh start, with a warning, when there is none). Under torchrun, call
    it on every rank; the process group is created here when nobody made one.
    """
    tc = train_config_from(cfg)
    recipe = cfg if isinstance(cfg, dict) else {"train": asdict(tc)}
    out = Path(out_dir or tc.out_dir or f"runs/{recipe.get('task', 'train')}")
    own_env = env is None
    env = env or xdist.init_distributed()
    try:
        return _train(bundle, tc, recipe, out, resume, env)
    finally:
        if own_env:
            xdist.shutdown(env)


def _train(
    bundle: TaskBundle, tc: TrainConfig, recipe: dict[str, Any], out: Path, resume: bool, env: xdist.DistEnv
) -> TrainResult:
    from rich.console import Console

    console = Console(stderr=True, quiet=not env.is_main)
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    root = out / "checkpoints"
    stream = streaming.is_stream(bundle.train_set)  # a shard folder: batches follow the shards' order
    if streaming.is_stream(bundle.train_set):
        per_rank = bundle.train_set.min_samples_per_rank(env.world_size)
    else:  # a map-style dataset: torch's Dataset type declares no __len__
        per_rank = len(cast(Sized, bundle.train_set)) // env.world_size
    steps_per_epoch = per_rank // tc.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"train.batch_size: {tc.batch_size} is larger than the {per_rank} training samples each of the "
            f"{env.world_size} process(es) gets"
        )
    total = min(s for s in (tc.max_steps, tc.epochs and tc.epochs * steps_per_epoch) if s)

    model = bundle.model.to(env.device)
    model.train()
    if tc.grad_accum > 1 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        warnings.warn(f"train.grad_accum={tc.grad_accum}: the model's BatchNorm layers normalise each micro-batch "
                      "alone, so the step differs from one batch of train.batch_size (GroupNorm or LayerNorm keep "
                      "accumulation exact)", stacklevel=2)
    phases = bundle.phases
    # a phase's forward leaves the other phases' parameters without gradients (a detached generator)
    model = xdist.wrap_model(model, env, tc.strategy, find_unused=phases is not None)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizers: list[torch.optim.Optimizer]
    if phases is None:
        optimizers = [build_adamw(model, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay)]  # no decay: biases, norms
        optimizer: ckpt.Optimizers = optimizers[0]
    else:
        optimizers = list(xphases.build_optimizers(model, phases, tc))
        optimizer = optimizers
    schedulers: list[torch.optim.lr_scheduler.LRScheduler] = [
        torch.optim.lr_scheduler.LambdaLR(o, cosine_with_warmup(total, tc.warmup, tc.min_lr_ratio)) for o in optimizers]
    scheduler = schedulers[0]
    scaler = torch.amp.GradScaler(env.device.type) if tc.precision == "fp16" else None
    autocast = _autocast_factory(tc.precision, env.device)

    step, epoch, in_epoch, resumed_from = 0, 0, 0, None
    loss_value: float | None = None

    def restore(directory: Path, state: dict[str, Any]) -> None:
        _check_world_size(state, env, tc)
        ckpt.restore_checkpoint(directory, state, model, optimizer, verify=False)  # load_latest verified it
        saved = state["scheduler"] if phases is not None else [state["scheduler"]]  # one per phase
        if len(saved) != len(schedulers):
            raise CorruptFileError(f"state.json holds {len(saved)} schedule(s) for {len(schedulers)} optimizer(s)",
                                   directory / ckpt.STATE)
        for sched, sched_state in zip(schedulers, saved):
            sched.load_state_dict(sched_state)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if state["world_size"] == env.world_size:
            ckpt.set_rng_state(state["rng"][env.rank])
            if stream:  # the recorded shard position is the one the step implies, on the same shards
                streaming.check_stream_state(bundle.train_set, state.get("stream"), state["epoch"],
                                             env.world_size, state["batch_in_epoch"] * tc.batch_size)

    loaded = ckpt.load_latest(root, restore) if resume else None
    latest = loaded[0] if loaded else None
    if resume and latest is None:
        console.print(f"[yellow]--resume: no complete checkpoint in {root}; starting from scratch[/]")
    if loaded is not None:
        latest, state = loaded
        step, epoch, in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        resumed_from, loss_value = step, state.get("loss")
        if state["world_size"] != env.world_size:  # allowed by train.elastic_resume
            seed_everything(tc.seed + 1000 * env.rank + step)
        if state.get("train_config") != asdict(tc):
            warnings.warn(f"{latest}: the train section differs from the one the checkpoint was made with", stacklevel=2)
        console.print(f"resuming from {latest} (step {step})")
    else:
        # Model init used `seed` on every rank (DDP also broadcasts rank 0's weights); training randomness
        # (dropout, augmentation) gets a stream per rank.
        seed_everything(tc.seed + 1000 * env.rank)
    if in_epoch >= steps_per_epoch:
        epoch, in_epoch = epoch + 1, 0

    logger = RunLogger(out, env.is_main, tensorboard=tc.tensorboard, resume_step=resumed_from)
    evaluator = RunEvaluator(bundle, out, env, tc.eval_every, tc.strategy, _primary(recipe), resumed_from is not None)
    if env.is_main:
        write_run_files(out, recipe, bundle)
    coupled = bundle.coupled_loss
    scale = scaler.scale if scaler is not None else (lambda t: t)
    bar = progress_bar(total, step, enabled=env.is_main and tc.progress)
    last_saved: Path | None = latest
    saved_step = step if latest is not None else -1
    window: list[float] = []
    phase_window: list[dict[str, float]] = []
    t0 = time.perf_counter()
    start_step = step
    stopped: str | None = None  # why training ended before `total` steps (early stopping, time limit)

    def position() -> tuple[str, str]:  # where the loop is, read when an error is raised
        return f"step {step + 1}", f"(epoch {epoch}, batch {in_epoch + 1} of the epoch)"
    sharded = tc.strategy == "fsdp" and env.distributed  # each rank writes its shards (torch.distributed.checkpoint)

    def save() -> Path | None:
        tensors, optim_json = ({}, None) if sharded else ckpt.gather_state(model, optimizer)
        rng = _gather_rng(env)
        path = None
        if sharded or env.is_main:
            state = {
                "epoch": epoch,
                "batch_in_epoch": in_epoch,
                "world_size": env.world_size,
                "rng": rng,
                "optimizer": optim_json,
                "scheduler": scheduler.state_dict() if phases is None else [s.state_dict() for s in schedulers],
                "scaler": scaler.state_dict() if scaler is not None else None,
                "train_config": asdict(tc),
                "recipe": recipe,
                "loss": loss_value,
            }
            if stream:  # every rank's shards done and samples into the next (all ranks read alike)
                state["stream"] = streaming.stream_state(bundle.train_set, epoch, env.world_size,
                                                         in_epoch * tc.batch_size)
            if sharded:
                return ckpt.write_sharded_checkpoint(root, step, model, optimizer, state, tc.keep_last)
            path = ckpt.write_checkpoint(root, step, tensors, state, tc.keep_last)
        xdist.barrier()
        return path

    try:
        while step < total:
            batches = _epoch_batches(bundle.train_set, bundle, tc, env, epoch, in_epoch, steps_per_epoch)
            for batch in _naming_step(batches, position):
                batch = to_device(batch, env.device)
                micro = split_batch(batch, tc.batch_size, tc.grad_accum)
                common: dict[str, Any] = {"step": step + 1, "autocast": autocast, "scale": scale,
                                          "sync": env.distributed}
                lr = scheduler.get_last_lr()[0]  # this step's rate, before the schedule moves on
                try:
                    if phases is not None:
                        phase_losses, grad_norm = xphases.phased_step(
                            model, phases, optimizers, schedulers, batch, tc, step + 1, autocast=autocast,
                            scaler=scaler, sync=env.distributed)
                        loss_value = sum(phase_losses.values())
                    elif coupled:
                        loss_value = accumulate_gradcache(
                            model, bundle.loss, micro, batch, device=env.device, micro_size=tc.micro_batch_size, **common
                        )
                    else:
                        loss_value = accumulate_naive(model, bundle.loss, micro, **common)
                except NonFiniteError as exc:
                    if f"step {step + 1}" in str(exc):
                        raise
                    # raised inside the model or loss (NaN inputs, embeddings): say at which step it happened
                    raise NonFiniteError(f"(epoch {epoch}, batch {in_epoch + 1} of the epoch) {exc}", source=f"step {step + 1}") from exc
                if phases is None:
                    grad_norm = _optimizer_step(model, params, optimizers[0], scheduler, scaler, tc)
                else:
                    phase_window.append(phase_losses)
                if bundle.after_step is not None:
                    bundle.after_step(xdist.unwrap(model), step + 1)
                step += 1
                in_epoch += 1
                window.append(loss_value)
                bar.update(1)
                if step % tc.log_every == 0 or step == total:
                    elapsed = time.perf_counter() - t0
                    rate = (step - start_step) * tc.batch_size * env.world_size / max(elapsed, 1e-9)
                    row = {
                        "epoch": epoch,
                        "loss": sum(window) / len(window),
                        **(xphases.log_row(phases, phase_window) if phases is not None else {}),
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "samples_per_s": rate,
                        "elapsed_s": elapsed,
                    }
                    logger.log(step, row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
                    window.clear()
                    phase_window.clear()
                if tc.sample_every and bundle.generate is not None and (step % tc.sample_every == 0 or step == total):
                    write_samples(bundle, model, out / SAMPLES / f"step_{step:09d}", tc, env)
                if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < total:
                    last_saved, saved_step = save(), step
                if evaluator.due(step, total):
                    if saved_step != step:  # the best checkpoint links this step's files
                        last_saved, saved_step = save(), step
                    logger.log_metrics(step, evaluator.evaluate(model, step, last_saved))
                    if tc.patience and evaluator.stale >= tc.patience:
                        stopped = f"early stopping: {evaluator.primary} did not improve in {tc.patience} evaluations"
                if tc.max_seconds is not None and not stopped and _out_of_time(t0, tc.max_seconds, env):
                    stopped = f"time limit: train.max_seconds = {tc.max_seconds:g} reached"
                if step >= total or stopped:
                    break
            if in_epoch >= steps_per_epoch:
                epoch, in_epoch = epoch + 1, 0
            if stopped:
                console.print(f"stopped at step {step} of {total} ({stopped})")
                break
        if saved_step != step:
            last_saved = save()
    finally:
        bar.close()
    seconds = time.perf_counter() - t0

    metrics: dict[str, float] = {}
    if (tc.evaluate or tc.eval_every) and evaluator.enabled:
        # FSDP2 shards live on every rank, so every rank takes part in the forward passes (inside evaluate).
        metrics = evaluator.evaluate(model, step, last_saved)
        logger.log_metrics(step, metrics)
    if env.is_main:
        evaluator.write_metrics()
    logger.close()

    result = TrainResult(
        out_dir=out,
        steps=step,
        epochs=step / steps_per_epoch,
        final_loss=loss_value,
        checkpoint=last_saved if env.is_main else None,
        metrics={k: float(v) for k, v in metrics.items()},
        train_seconds=seconds,
        samples_per_second=(step - start_step) * tc.batch_size * env.world_size / max(seconds, 1e-9),
        resumed_from=resumed_from,
        stopped=stopped,
        history=_read_history(logger.path) if env.is_main else [],
    )
    if env.is_main:
        summary = {k: v for k, v in asdict(result).items() if k != "history"}
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in summary.items()}
        (out / RESULT_NAME).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return result
