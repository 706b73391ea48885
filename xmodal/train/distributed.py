"""``torch.distributed`` plumbing: process group from torchrun's environment, rank helpers, DDP / FSDP2 wrapping.

Only PyTorch's own engine is used: ``torchrun`` launches the processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; we call ``init_process_group`` with gloo on CPU and nccl on
GPU. Without those variables everything runs in one process and the helpers answer rank 0 of 1.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the world size, its device and whether we created the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when torchrun's variables describe more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed() -> DistEnv:
    """Initialise the default process group from torchrun's environment (gloo on CPU, nccl on CUDA)."""
    use_cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if dist.is_available() and dist.is_initialized():  # someone else (a test, a notebook) made the group
        return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group=False)
    if not launched_by_torchrun():
        return DistEnv(0, 1, 0, device, owns_group=False)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend, device_id=device if use_cuda else None)
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group=True)


def shutdown(env: DistEnv) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the input is unchanged). Identity in one process."""
    if world_size() == 1:
        return value.detach().clone()
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


T = TypeVar("T")


def broadcast_object(obj: T, src: int = 0) -> T:
    """Send a picklable Python object from ``src`` to every rank (used for small decisions, never for files)."""
    if world_size() == 1:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    return cast(T, box[0])  # every rank passes an object of the same kind; src's arrives


def wrap_model(model: nn.Module, env: DistEnv, strategy: str, find_unused: bool = False) -> nn.Module:
    """Wrap ``model`` (already on ``env.device``) for data-parallel training: DDP, or FSDP2 ``fully_shard``.

    ``find_unused``: DDP's ``find_unused_parameters``, for models whose forward leaves some parameters without
    gradients (the phases of a GAN's step).

    FSDP2 shards each direct child that owns parameters (looking inside ModuleDict/ModuleList, which have no
    forward), then the root, which takes the rest (e.g. a scalar logit scale): the usual per-block policy.
    """
    if not env.distributed:
        return model
    model = _sync_batchnorm(model, env)
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        device_ids = [env.device.index] if env.device.type == "cuda" else None
        return DDP(model, device_ids=device_ids, find_unused_parameters=find_unused)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        def shard_blocks(module: nn.Module) -> None:
            for child in module.children():
                if isinstance(child, (nn.ModuleDict, nn.ModuleList)):  # containers have no forward to hook
                    shard_blocks(child)
                elif any(p.requires_grad and p.ndim > 0 for p in child.parameters()):
                    fully_shard(child)
                    _copy_weight_views(child)

        # FSDP2 cannot shard 0-d parameters (a CLIP logit scale): they stay replicated, outside FSDP, and
        # their gradients are averaged by :func:`reduce_replicated_grads`.
        scalars = [p for p in model.parameters() if p.ndim == 0]
        for p in model.parameters():  # FSDP2 shards along dim 0 of a contiguous tensor (channels-last kernels)
            p.data = p.data.contiguous()
        shard_blocks(model)
        fully_shard(model, ignored_params=set(scalars) or None)
        # a plain list attribute: nn.Module.__setattr__ is typed for tensors and modules only
        model._xmodal_replicated = scalars  # type: ignore[assignment]
        return model
    raise ValueError(f"unknown strategy {strategy!r}")


def _copy_weight_views(module: nn.Module) -> None:
    """Clone the outputs of an FSDP2 block that are views of its own weights (a learnt log-variance returned as
    ``logvar.expand_as(mean)``, as Gaussian decoders do).

    FSDP2 frees a block's gathered weights when its forward returns (``reshard_after_forward``); an output that
    shares their storage then points at freed memory: the loss reads garbage or, on CPU, segfaults. This
    forward hook runs before FSDP2's (``prepend``) and replaces such outputs by copies, which autograd
    differentiates as the view itself; other outputs pass through untouched."""

    def hook(mod: nn.Module, args: Any, output: Any) -> Any:
        from torch.distributed.tensor import DTensor

        # during the forward the block's own weights are gathered plain tensors; nested blocks' are shards
        gathered = {p.untyped_storage().data_ptr() for p in mod.parameters() if not isinstance(p, DTensor)}
        gathered.discard(0)
        return _map_tensors(output, lambda t: t.clone() if t.untyped_storage().data_ptr() in gathered else t)

    module.register_forward_hook(hook, prepend=True)


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``fn`` applied to every tensor of a nested output (dicts, lists, tuples, named tuples), structure kept."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return type(value)({k: _map_tensors(v, fn) for k, v in value.items()})
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple takes its fields one by one
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


def _sync_batchnorm(model: nn.Module, env: DistEnv) -> nn.Module:
    """BatchNorm under data parallelism, with statistics over the global batch: torch's SyncBatchNorm on GPUs,
    :class:`xmodal.nn.global_batchnorm.GlobalBatchNorm` elsewhere (SyncBatchNorm has no CPU kernel). Either way
    the converted layers share the original parameters and buffers."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if env.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from xmodal.nn.global_batchnorm import convert_global_batchnorm

    return convert_global_batchnorm(model)


def reduce_replicated_grads(model: nn.Module) -> None:
    """Average the gradients of parameters FSDP2 left replicated (see :func:`wrap_model`); no-op otherwise."""
    params = getattr(model, "_xmodal_replicated", [])
    if world_size() == 1 or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world_size())


@contextlib.contextmanager
def full_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Every FSDP2 module of ``model`` unsharded for the duration: its parameters are full plain tensors, as in
    one process, for code that reads them outside a forward (a task's ``sample``, which runs the EMA copy or a
    decoder directly, so FSDP2's forward hooks never gather them). Collective under FSDP2: call on every rank.

    FSDP2's own ``unshard()`` / ``reshard()`` of each :class:`~torch.distributed.fsdp.FSDPModule` (they are not
    recursive, hence every one); the shards are registered again on exit, even after an error. Read-only: what
    is written into the gathered tensors is not copied back into the shards. A forward of an FSDP2 submodule
    inside the context reshards that submodule after it returns (``reshard_after_forward``), as in training, so
    its next forward gathers again (on every rank). Without FSDP2 modules (one process, DDP) it does nothing.
    """
    from torch.distributed.fsdp import FSDPModule

    sharded: list[FSDPModule] = [m for m in model.modules() if isinstance(m, FSDPModule)]
    gathered: list[FSDPModule] = []
    try:
        for block in sharded:
            block.unshard()
            gathered.append(block)
        yield model
    finally:
        for block in reversed(gathered):
            block.reshard()


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 modules are the user's module already)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) and hasattr(model, "no_sync") else model


@contextlib.contextmanager
def no_grad_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce while accumulating micro-batches (DDP ``no_sync``, FSDP2 flag)."""
    if not enabled:
        yield
        return
    # nn.Module.__getattr__ is typed ``Tensor | Module``; these are the wrappers' methods, found at run time
    wrapped = cast(Any, model)
    if hasattr(model, "no_sync"):  # DDP
        with wrapped.no_sync():
            yield
        return
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
        return
    yield
