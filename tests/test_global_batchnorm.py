"""GlobalBatchNorm over 2 gloo processes equals one ``nn.BatchNorm2d`` on the concatenated batch (the reference is
torch's own layer, run in one process): outputs, input gradients, parameter gradients (summed over ranks, as
each rank's loss is a part of the whole), running mean and variance. Unequal shards (5 and 3 samples) check that
the statistics weight each rank by its count. Tolerance 1e-5 (float32 sums in another order)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from gloo_group import free_port, gloo_group
from torch import nn

from xmodal.nn.global_batchnorm import GlobalBatchNorm, convert_global_batchnorm

WORLD, SHARDS = 2, ((0, 5), (5, 8))  # rank 0 holds 5 samples, rank 1 holds 3
TOL = 1e-5


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    with torch.no_grad():  # a non-trivial affine part, so its gradients and the normalisation both matter
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    return model


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 6, 6, generator=g) * 3 + 1  # an offset and a scale the norm has to remove
    weights = torch.randn(8, 4, 4, 4, generator=g)  # the loss: a fixed weighting of the outputs
    return x, weights


def _step(model: nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * w).sum().backward()
    return {"y": y.detach(), "x_grad": x.grad.detach(),  # type: ignore[union-attr]
            **{f"grad.{k}": p.grad.detach().clone() for k, p in model.named_parameters()},
            "running_mean": model[1].running_mean.clone(), "running_var": model[1].running_var.clone()}


def _worker(rank: int, port: int, result_dir: str) -> None:
    with gloo_group(rank, WORLD, port):
        lo, hi = SHARDS[rank]
        x, w = _data()
        model = convert_global_batchnorm(_model())
        out = _step(model, x[lo:hi], w[lo:hi])
        for k in [k for k in out if k.startswith("grad.")]:
            torch.distributed.all_reduce(out[k])  # the whole batch's loss is the sum of the ranks' losses
        torch.save(out, os.path.join(result_dir, f"rank{rank}.pt"))


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_equal_one_batchnorm_on_the_whole_batch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(free_port(), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]
    x, w = _data()
    full = _step(_model(), x, w)  # torch's BatchNorm2d, one process, the whole batch
    for rank, (lo, hi) in enumerate(SHARDS):
        got = ranks[rank]
        torch.testing.assert_close(got["y"], full["y"][lo:hi], atol=TOL, rtol=TOL)
        torch.testing.assert_close(got["x_grad"], full["x_grad"][lo:hi], atol=TOL, rtol=TOL)
        for k in ("running_mean", "running_var", *(k for k in full if k.startswith("grad."))):
            torch.testing.assert_close(got[k], full[k], atol=TOL, rtol=TOL, msg=k)
    # Not vacuous: one shard's own statistics give other outputs.
    alone = _step(_model(), x[:5], w[:5])
    assert (alone["y"] - full["y"][:5]).abs().max() > 100 * TOL


def test_without_a_process_group_it_is_batchnorm() -> None:
    x, w = _data()
    reference, converted = _model(), convert_global_batchnorm(_model())
    assert isinstance(converted[1], GlobalBatchNorm)
    for a, b in ((reference, converted), (reference.eval(), converted.eval())):
        got, want = _step(b, x, w), _step(a, x, w)
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=0, rtol=0, msg=k)


def test_conversion_shares_parameters_and_buffers() -> None:
    model = _model()
    bn = model[1]
    converted = convert_global_batchnorm(model)[1]
    assert converted.weight is bn.weight and converted.bias is bn.bias
    assert converted.running_mean is bn.running_mean and converted.running_var is bn.running_var
    assert converted.num_batches_tracked is bn.num_batches_tracked
