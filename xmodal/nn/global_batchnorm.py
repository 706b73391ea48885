"""BatchNorm over the global batch of a data-parallel run, on any device and process-group backend.

torch's ``SyncBatchNorm`` computes its statistics with CUDA-only kernels (``batch_norm_stats`` has no CPU
implementation), so under ``torchrun`` on CPU (gloo) every process would normalise its own shard of the batch:
the run would not compute what one process with the whole batch computes. :class:`GlobalBatchNorm` takes the
statistics over all processes with two differentiable all-reduces (the sum, then the sum of squared deviations
from the global mean: the two-pass form, no cancellation), so forward values, input and parameter gradients and
running statistics are those of one ``nn.BatchNorm`` on the concatenated batch, up to the order of float sums.

Outside a process group, or in eval mode, it is plain BatchNorm (``F.batch_norm``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce

__all__ = ["GlobalBatchNorm", "convert_global_batchnorm"]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer (any of 1-D, 2-D, 3-D inputs ``(N, C, ...)``) whose training statistics cover the batch
    of every process in ``process_group`` (default: the world)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: dist.ProcessGroup | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input (N, C, ...), got {input.dim()} dimensions")

    def _synced(self) -> bool:
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self._synced():
            return super().forward(input)
        dims = [d for d in range(input.dim()) if d != 1]
        group = self.process_group or dist.group.WORLD
        count = torch.tensor([input.numel() // input.shape[1]], dtype=torch.float64)
        dist.all_reduce(count, group=group)  # a count, no gradient
        n = float(count.item())
        if n < 2:
            raise ValueError(f"expected more than 1 value per channel over the global batch, got {int(n)}")
        mean = all_reduce(input.sum(dims), group=group) / n
        centred = input - _per_channel(mean, input.dim())
        var = all_reduce(centred.pow(2).sum(dims), group=group) / n  # biased, as BatchNorm normalises
        tracked = self.num_batches_tracked
        if (self.track_running_stats and self.running_mean is not None and self.running_var is not None
                and tracked is not None):
            with torch.no_grad():
                tracked.add_(1)
                momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (n / (n - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        out = centred * _per_channel(torch.rsqrt(var + self.eps), input.dim())
        if self.affine:
            out = out * _per_channel(self.weight, input.dim()) + _per_channel(self.bias, input.dim())
        return out


def _per_channel(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def convert_global_batchnorm(module: nn.Module, process_group: dist.ProcessGroup | None = None) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`GlobalBatchNorm` that shares its parameters
    and buffers (so an optimizer, a checkpoint or a caller holding them sees the same tensors)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, process_group)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_global_batchnorm(child, process_group))
    return module
