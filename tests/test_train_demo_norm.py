"""The demo's towers keep GradCache accumulation exact: GroupNorm (the default) normalises each image alone, so
four micro-batches give the full batch's gradients; BatchNorm couples the samples of a micro-batch and does not."""

from __future__ import annotations

import copy

import pytest
import torch
from nn_data import skimage_images

from xmodal.errors import ConfigError
from xmodal.tasks import trimodal_retrieval as task
from xmodal.train.loop import accumulate_gradcache, split_batch

SMALL = {"embed_dim": 16, "image_channels": [8, 16], "audio_channels": [16, 16], "text_hidden": 32, "dropout": 0.0}
TOL = 1e-5  # float32 sums in another order


def _batch(n: int = 16) -> dict:
    g = torch.Generator().manual_seed(0)
    images = skimage_images(64).repeat(n // 4, 1, 1, 1)  # four real images, each shifted differently
    images = torch.stack([torch.roll(im, shifts=(i, 2 * i), dims=(1, 2)) for i, im in enumerate(images)])
    lengths = torch.randint(20, 60, (n,), generator=g)
    mask = torch.arange(60)[None] < lengths[:, None]
    return {"image": images, "audio": torch.randn(n, 64, 60, generator=g) * mask[:, None], "audio_mask": mask,
            "text": torch.randn(n, 384, generator=g), "id": [str(i) for i in range(n)]}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _gap(norm: str) -> float:
    """Largest gradient difference between the full batch and GradCache over 4 micro-batches."""
    torch.manual_seed(0)
    model = task.build_model({"model": dict(SMALL, image_norm=norm)}).train()
    twin = copy.deepcopy(model)
    batch = _batch()
    task.loss_fn(model(batch), batch).backward()
    accumulate_gradcache(twin, task.loss_fn, split_batch(batch, 16, 4), batch)
    full, cached = _grads(model), _grads(twin)
    assert full.keys() == cached.keys()
    return max((full[k] - cached[k]).abs().max().item() for k in full)


def test_default_towers_accumulate_exactly() -> None:
    assert task.ModelConfig().image_norm == "group"
    assert _gap("group") <= TOL


def test_batchnorm_is_not_exact() -> None:
    assert _gap("batch") > 100 * TOL  # the reason the default is GroupNorm: the comparison above is not vacuous


def test_unknown_norm_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.image_norm"):
        task.build_model({"model": dict(SMALL, image_norm="instance")})


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_batchnorm_under_data_parallelism(device: str) -> None:
    """What the README's table says of BatchNorm under torchrun: converted to SyncBatchNorm on GPUs and to
    GlobalBatchNorm on CPU (SyncBatchNorm has no CPU kernel), both sharing the original parameters, so optimizer
    and checkpoint see the same tensors. The conversion itself needs no GPU, so both rows are checked here; that
    GlobalBatchNorm computes the whole batch's statistics is tests/test_global_batchnorm.py."""
    from xmodal.nn.global_batchnorm import GlobalBatchNorm
    from xmodal.train import distributed as xdist

    torch.manual_seed(0)
    model = task.build_model({"model": dict(SMALL, image_norm="batch")})
    before = {n: p for n, p in model.named_parameters()}
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn > 0
    env = xdist.DistEnv(rank=0, world_size=2, local_rank=0, device=torch.device(device), owns_group=False)
    out = xdist._sync_batchnorm(model, env)
    synced = torch.nn.SyncBatchNorm if device == "cuda" else GlobalBatchNorm
    assert sum(isinstance(m, synced) for m in out.modules()) == n_bn
    assert not any(type(m) is torch.nn.BatchNorm2d for m in out.modules())
    assert all(p is before[n] for n, p in out.named_parameters())
    group = task.build_model({"model": dict(SMALL, image_norm="group")})  # nothing to convert
    assert xdist._sync_batchnorm(group, env) is group
