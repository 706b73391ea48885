"""GradCache under DDP: 2 gloo ranks, each accumulating 2 micro-batches of its half of the batch (no_sync on the
first), with InfoNCE gathered across ranks, give the gradients of one process on the full batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from xmodal.tasks import synthetic_pairs
from xmodal.train.loop import accumulate_gradcache, split_batch

CFG = {"task": "synthetic_pairs", "data": {"n_train": 128, "n_val": 16}, "model": {"hidden": 32, "embed_dim": 16, "dropout": 0.0}}
BATCH, WORLD, MICRO = 64, 2, 2
TOL = 1e-5  # float32, different summation order

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def _model_and_batch():
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    return bundle, bundle.collate([bundle.train_set[i] for i in range(BATCH)])


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        bundle, batch = _model_and_batch()
        model = torch.nn.parallel.DistributedDataParallel(bundle.model)
        n = BATCH // WORLD
        local = split_batch(batch, BATCH, WORLD)[rank]  # contiguous halves: gathered order = full-batch order
        accumulate_gradcache(model, bundle.loss, split_batch(local, n, MICRO), local, sync=True)
        grads = {name: p.grad.contiguous() for name, p in model.module.named_parameters()}
        save_file(grads, f"{tmp}/grads{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_ddp_gradcache_equals_single_process_full_batch(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True, start_method="spawn")
    bundle, batch = _model_and_batch()
    bundle.loss(bundle.model(batch), batch).backward()
    ranks = [load_file(str(tmp_path / f"grads{r}.safetensors")) for r in range(WORLD)]
    for name, p in bundle.model.named_parameters():
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # DDP left every rank with the same gradient
        assert torch.allclose(ranks[0][name], p.grad, rtol=0, atol=TOL), (name, (ranks[0][name] - p.grad).abs().max())
