"""FSDP2 plumbing of ``xmodal.train.distributed`` on 2 gloo processes, against the same model in one process.

- ``full_weights``: a method other than the forward (a task's ``sample``) reading a sharded block's weights and
  a frozen copy kept by the root (as an EMA is) fails on shards (DTensor mixed with plain tensors) and, inside
  the context, returns exactly (tolerance 0) what the unsharded model returns; after it the weights are shards
  again and training goes on.
- ``wrap_model``'s copy of outputs that are views of a block's weights (a Gaussian decoder's
  ``logvar.expand_as(mean)``): FSDP2 frees the gathered weights when the block's forward returns, so without the
  copy such an output reads freed memory. With it, the loss and the gradients equal one process's on the whole
  batch (1e-6: the two ranks' mean gradients are averaged in another order).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp
from gloo_group import free_port
from torch import nn

WORLD, PER_RANK = 2, 4


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 4)
        self.logvar = nn.Parameter(torch.linspace(-2.0, 1.0, 4))

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        mean = self.net(z)
        return {"mean": mean, "logvar": self.logvar.expand_as(mean)}  # a view of the weight


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.decoder = _Decoder()  # an FSDP2 block of its own (it has trainable weights)
        self.frozen = copy.deepcopy(self.decoder.net).requires_grad_(False)  # left to the root, like an EMA

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decoder(z)

    def sample(self, z: torch.Tensor) -> torch.Tensor:  # no forward: FSDP2's hooks gather nothing for it
        return self.decoder.net(z) * self.decoder.logvar.exp() + self.frozen(z)


def _nll(out: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return (0.5 * (out["logvar"] + (x - out["mean"]) ** 2 / out["logvar"].exp())).mean()


def _worker(rank: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        from torch.distributed.tensor import DTensor

        from xmodal.train import distributed as xdist

        torch.set_num_threads(1)
        torch.manual_seed(0)
        model = _Model()
        reference = copy.deepcopy(model)
        g = torch.Generator().manual_seed(1)
        z, x = torch.randn(WORLD * PER_RANK, 3, generator=g), torch.randn(WORLD * PER_RANK, 4, generator=g)
        probe = torch.randn(5, 3, generator=g)
        with torch.no_grad():
            expected_sample = reference.sample(probe)
        ref_loss = _nll(reference(z), x)
        ref_loss.backward()

        env = xdist.DistEnv(rank, WORLD, rank, torch.device("cpu"), owns_group=False)
        wrapped = xdist.wrap_model(model, env, "fsdp")
        mine = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        out = wrapped(z[mine])
        resharded = isinstance(wrapped.decoder.logvar, DTensor)  # FSDP2 gave the gathered weight back
        loss = _nll(out, x[mine])
        loss.backward()
        grads = {name: p.grad.full_tensor() for name, p in wrapped.named_parameters() if p.grad is not None}
        ref_grads = {name: p.grad for name, p in reference.named_parameters() if p.grad is not None}

        try:
            with torch.no_grad():
                wrapped.sample(probe)
            sharded_error = ""
        except RuntimeError as exc:
            sharded_error = str(exc)
        with torch.no_grad(), xdist.full_weights(wrapped):
            plain = all(not isinstance(p, DTensor) for p in wrapped.parameters())
            gathered_sample = wrapped.sample(probe)
        shards_again = all(isinstance(p, DTensor) for p in wrapped.parameters())
        again = wrapped(z[mine])  # training goes on after the context
        results: dict[str, Any] = {
            "resharded_after_forward": resharded,
            "logvar_output": out["logvar"][0].tolist(),
            "logvar_weight": reference.decoder.logvar.tolist(),
            "loss": xdist.all_reduce_mean(loss).item(),
            "ref_loss": ref_loss.item(),
            "grad_names": sorted(grads),
            "ref_grad_names": sorted(ref_grads),
            "grad_err": max((grads[k] - ref_grads[k]).abs().max().item() for k in ref_grads),
            "sharded_error": sharded_error,
            "plain_inside": plain,
            "sample_equal": torch.equal(gathered_sample, expected_sample),
            "shards_again": shards_again,
            "forward_again_equal": torch.equal(again["mean"].detach(), reference(z[mine])["mean"].detach()),
        }
        Path(result_dir, f"rank{rank}.json").write_text(json.dumps(results))
    finally:
        torch.distributed.destroy_process_group()


def test_full_weights_and_weight_views_under_fsdp2() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(free_port(), tmp), nprocs=WORLD, join=True)
        results = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(WORLD)]
    for res in results:
        assert res["resharded_after_forward"]
        assert res["logvar_output"] == res["logvar_weight"]  # the copied view, not freed memory
        assert abs(res["loss"] - res["ref_loss"]) < 1e-6, res
        assert res["grad_names"] == res["ref_grad_names"] == ["decoder.logvar", "decoder.net.bias",
                                                               "decoder.net.weight"]
        assert res["grad_err"] < 1e-6, res
        assert "DTensor" in res["sharded_error"]  # what full_weights is for
        assert res["plain_inside"] and res["sample_equal"] and res["shards_again"] and res["forward_again_equal"]
