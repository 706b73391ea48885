"""Gradient accumulation for a contrastive loss, and NaN handling, on the synthetic pairs task."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from xmodal.errors import NonFiniteError
from xmodal.tasks import synthetic_pairs
from xmodal.train.loop import accumulate_gradcache, accumulate_naive, split_batch, train

CFG = {
    "task": "synthetic_pairs",
    "data": {"n_train": 256, "n_val": 64},
    "model": {"hidden": 32, "embed_dim": 16, "dropout": 0.0},
}
TOL = 1e-5  # float32; the three paths sum the same terms in a different order


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _setup():
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    batch = bundle.collate([bundle.train_set[i] for i in range(64)])
    return bundle, batch


def test_gradcache_equals_full_batch_and_naive_does_not() -> None:
    bundle, batch = _setup()
    full_model = bundle.model
    gc_model, naive_model = copy.deepcopy(full_model), copy.deepcopy(full_model)

    full_loss = bundle.loss(full_model(batch), batch)
    full_loss.backward()
    reference = _grads(full_model)

    micro = split_batch(batch, 64, 4)
    assert [m["a"].shape[0] for m in micro] == [16] * 4 and micro[1]["id"] == list(range(16, 32))
    gc_loss = accumulate_gradcache(gc_model, bundle.loss, micro, batch)
    naive_loss = accumulate_naive(naive_model, bundle.loss, micro)
    cached, naive = _grads(gc_model), _grads(naive_model)

    assert abs(gc_loss - full_loss.item()) <= TOL
    for name, ref in reference.items():
        assert torch.allclose(cached[name], ref, rtol=0, atol=TOL), (name, (cached[name] - ref).abs().max())
    # Summing micro-batch InfoNCE losses contrasts only within micro-batches: a different objective.
    assert abs(naive_loss - full_loss.item()) > 0.1
    worst = max((naive[n] - ref).abs().max().item() for n, ref in reference.items())
    assert worst > 100 * TOL
    # the learnable temperature gets its gradient exactly once
    assert torch.allclose(cached["logit_scale.log_scale"], reference["logit_scale.log_scale"], rtol=0, atol=TOL)


def test_gradcache_replays_dropout() -> None:
    """With dropout, the recomputed forward must reuse the caching pass's masks, or the cached gradients belong
    to other activations. Reference: the micro-batches forwarded in the same order with autograd, one graph."""
    torch.manual_seed(0)
    bundle = synthetic_pairs.build({**CFG, "model": {**CFG["model"], "dropout": 0.5}})
    batch = bundle.collate([bundle.train_set[i] for i in range(64)])
    micro = split_batch(batch, 64, 2)
    cached_model, reference_model = bundle.model, copy.deepcopy(bundle.model)

    torch.manual_seed(1)
    accumulate_gradcache(cached_model, bundle.loss, micro, batch)
    torch.manual_seed(1)
    outs = [reference_model(m) for m in micro]  # same RNG draws as the caching pass
    joined = {k: torch.cat([o[k] for o in outs]) for k in ("a_emb", "b_emb")}
    bundle.loss({**joined, "logit_scale": outs[-1]["logit_scale"]}, batch).backward()
    cached, reference = _grads(cached_model), _grads(reference_model)
    for name, ref in reference.items():
        assert torch.allclose(cached[name], ref, rtol=0, atol=TOL), (name, (cached[name] - ref).abs().max())


def _step_of_position(dataset, position: int, batch_size: int, seed: int) -> tuple[int, int]:
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(0)
    return list(sampler)[position], position // batch_size + 1


@pytest.mark.parametrize("where", ["input", "loss"])
@pytest.mark.parametrize("coupled", [True, False])
def test_nan_raises_naming_the_step(tmp_path: Path, where: str, coupled: bool) -> None:
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    bundle.coupled_loss = coupled
    index, step = _step_of_position(bundle.train_set, 2 * 32 + 5, 32, seed=0)  # third batch of epoch 0
    if where == "input":
        bundle.train_set.a[index, 3] = float("nan")
    else:
        base = bundle.loss
        bundle.loss = lambda out, batch: base(out, batch) + (float("inf") if index in batch["id"] else 0.0)
    cfg = {"train": {"epochs": 1, "batch_size": 32, "grad_accum": 2, "progress": False, "tensorboard": False}}
    with pytest.raises(NonFiniteError, match=rf"step {step}\b") as info:
        train(bundle, cfg, out_dir=tmp_path)
    assert step == 3
    assert "nan" in str(info.value).lower() or "inf" in str(info.value).lower()


def test_accumulation_with_batchnorm_warns(tmp_path: Path) -> None:
    """GradCache cannot make BatchNorm exact (each micro-batch is normalised alone): the trainer says so."""
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    bundle.model.encoders["a"] = torch.nn.Sequential(torch.nn.BatchNorm1d(bundle.train_set.a.shape[1]),
                                                     bundle.model.encoders["a"])
    cfg = {"train": {"max_steps": 1, "batch_size": 32, "grad_accum": 2, "progress": False, "tensorboard": False,
                     "evaluate": False}}
    with pytest.warns(UserWarning, match="BatchNorm layers normalise each micro-batch alone"):
        train(bundle, cfg, out_dir=tmp_path)
