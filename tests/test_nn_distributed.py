"""InfoNCE gathered across 2 gloo processes equals the single-process full batch: the loss (mean over ranks) and
the gradients of a DDP-wrapped model (DDP averages gradients). Tolerance 1e-5 (float32, different sum orders)."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
from gloo_group import free_port, gloo_group
from torch import nn

from xmodal.nn.multimodal import ContrastiveModel, contrastive_loss
from xmodal.nn.objectives import vatt_loss

WORLD, PER_RANK = 2, 4


def _model() -> ContrastiveModel:
    torch.manual_seed(0)
    enc = {
        "image": nn.Sequential(nn.Linear(6, 8), nn.Tanh()),
        "audio": nn.Sequential(nn.Linear(5, 8), nn.Tanh()),
        "text": nn.Linear(7, 8),
    }
    return ContrastiveModel(enc, embed_dim=4, projections={m: 8 for m in enc})


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = WORLD * PER_RANK
    return {
        "image": torch.randn(n, 6, generator=g),
        "audio": torch.randn(n, 5, generator=g),
        "text": torch.randn(n, 7, generator=g),
    }


def _vatt(out: dict[str, torch.Tensor]) -> torch.Tensor:
    return vatt_loss(out["image_emb"], out["audio_emb"], out["image_emb"], out["text_emb"]).loss


CASES = (("info_nce", contrastive_loss), ("vatt", _vatt), ("unequal", contrastive_loss))
UNEQUAL = ((0, 5), (5, 2 * PER_RANK))


def _worker(rank: int, port: int, result_dir: str) -> None:
    with gloo_group(rank, WORLD, port):
        results = {}
        for name, loss_fn in CASES:
            # Unequal case: rank 0 holds 5 rows, rank 1 holds 3 (a last batch not dropped).
            lo, hi = UNEQUAL[rank] if name == "unequal" else (rank * PER_RANK, (rank + 1) * PER_RANK)
            local = {k: v[lo:hi] for k, v in _data().items()}
            # VATT's fixed temperature leaves logit_scale unused: DDP must be told.
            model = nn.parallel.DistributedDataParallel(_model(), find_unused_parameters=name == "vatt")
            loss = loss_fn(model(local))
            if name == "unequal":  # weight by the rank's share so that DDP's mean is the full-batch mean
                loss = loss * WORLD * (hi - lo) / (WORLD * PER_RANK)
            loss.backward()
            mean_loss = loss.detach().clone()
            torch.distributed.all_reduce(mean_loss)
            results[name] = {
                "loss": mean_loss / WORLD,
                **{k: p.grad.clone() for k, p in model.module.named_parameters() if p.grad is not None},
            }
        torch.save(results, os.path.join(result_dir, f"rank{rank}.pt"))


@pytest.mark.distributed
@pytest.mark.slow
def test_gathered_info_nce_matches_full_batch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(free_port(), tmp), nprocs=WORLD, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)]
    for name, loss_fn in CASES:
        model = _model()
        loss = loss_fn(model(_data()))  # one process, the whole batch, nothing to gather
        loss.backward()
        for r in ranks:
            assert float(r[name]["loss"]) == pytest.approx(loss.item(), abs=1e-5)
            assert set(r[name]) == {"loss"} | {k for k, p in model.named_parameters() if p.grad is not None}
            for k, p in model.named_parameters():
                if p.grad is None:
                    continue
                torch.testing.assert_close(r[name][k], p.grad, atol=1e-5, rtol=1e-5, msg=f"{name} {k}")
    # The gather matters: without the other rank's negatives the loss differs.
    local_only = contrastive_loss(_model()({k: v[:PER_RANK] for k, v in _data().items()}), gather=False)
    assert abs(local_only.item() - float(ranks[0]["info_nce"]["loss"])) > 1e-3
