"""A task's own step: phases checked when the optimizers are built, each phase stepping only its parameters,
``every`` skipping steps, and periodic sampling that leaves training exactly as it would have been."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xmodal.config.recipe import load_recipe
from xmodal.errors import ConfigError
from xmodal.tasks.base import Phase, build_task
from xmodal.train import checkpoint as ckpt
from xmodal.train.config import TrainConfig
from xmodal.train.loop import train
from xmodal.train.phases import build_optimizers

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.backbone=gan", "data.distribution=moons", "data.n_train=128", "data.n_val=32", "model.hidden=16",
        "model.depth=1", "train.max_steps=8", "train.batch_size=16", "train.checkpoint_every=0",
        "train.eval_every=0", "train.evaluate=false", "train.sample_every=0", "train.progress=false",
        "train.tensorboard=false", "train.threads=1", "train.log_every=1"]


def _loss(outputs: dict, batch: dict) -> torch.Tensor:
    return outputs["y"].sum()


def test_phases_are_checked_when_the_optimizers_are_built() -> None:
    model = nn.ModuleDict({"generator": nn.Linear(2, 2), "discriminator": nn.Linear(2, 1)})
    tc = TrainConfig(max_steps=1)
    with pytest.raises(ConfigError, match="already"):
        build_optimizers(model, [Phase("d", _loss, ("discriminator.",)), Phase("all", _loss, ("",))], tc)
    with pytest.raises(ConfigError, match="no trainable parameter starts with critic."):
        build_optimizers(model, [Phase("d", _loss, ("critic.",))], tc)
    with pytest.raises(ConfigError, match="every must be >= 1"):
        build_optimizers(model, [Phase("d", _loss, ("discriminator.",), every=0)], tc)
    with pytest.raises(ConfigError, match="distinct names"):
        build_optimizers(model, [Phase("d", _loss, ("discriminator.",)), Phase("d", _loss, ("generator.",))], tc)
    with pytest.raises(ConfigError, match="tuple of parameter-name prefixes"):
        build_optimizers(model, [Phase("d", _loss, "discriminator.")], tc)  # type: ignore[arg-type]
    opt_d, opt_g = build_optimizers(model, [Phase("d", _loss, ("discriminator.",), lr=0.5, betas=(0.0, 0.9)),
                                            Phase("g", _loss, ("generator.",))], tc)
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {id(p) for p in model["discriminator"].parameters()}
    assert opt_d.param_groups[0]["lr"] == 0.5 and opt_d.param_groups[0]["betas"] == (0.0, 0.9)
    assert opt_g.param_groups[0]["lr"] == tc.lr
    # biases take no weight decay, as in the single-optimizer path
    assert {g["name"]: g["weight_decay"] for g in opt_g.param_groups} == {"decay": tc.weight_decay, "no_decay": 0.0}


def _gan_run(tmp_path: Path, name: str, *extra: str):
    cfg = load_recipe(REPO / "recipes" / "generative_toy.yaml", [*TINY, *extra])
    torch.manual_seed(0)
    bundle = build_task(cfg)
    return bundle, train(bundle, cfg, out_dir=tmp_path / name)


def test_each_phase_steps_only_its_parameters_and_every_skips(tmp_path: Path) -> None:
    bundle, _ = _gan_run(tmp_path, "frozen", "model.g_lr=1e-30")  # the generator barely moves
    torch.manual_seed(0)
    fresh = build_task(load_recipe(REPO / "recipes" / "generative_toy.yaml", TINY)).model
    for name, p in bundle.model.generator.state_dict().items():  # same init (seed 0): moved by ~1e-30 only
        assert torch.allclose(p, fresh.generator.state_dict()[name], atol=1e-6), name
    assert any(not torch.equal(p, fresh.discriminator.state_dict()[k])
               for k, p in bundle.model.discriminator.state_dict().items())

    bundle.phases[1].every = 2  # the generator on even steps only
    result = train(bundle, load_recipe(REPO / "recipes" / "generative_toy.yaml", TINY), out_dir=tmp_path / "every")
    rows = result.history
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all((r["loss_generator"] == r["loss_generator"]) == (r["step"] % 2 == 0) for r in rows)  # NaN when skipped


def test_periodic_samples_do_not_change_training(tmp_path: Path) -> None:
    plain_bundle, plain = _gan_run(tmp_path, "plain")
    _, sampled = _gan_run(tmp_path, "sampled", "train.sample_every=4", "train.sample_n=50")
    for step in (4, 8):
        folder = tmp_path / "sampled" / "samples" / f"step_{step:09d}"
        assert (folder / "samples.png").is_file()
        assert len((folder / "samples.csv").read_text().splitlines()) == 51
    assert not (tmp_path / "plain" / "samples").exists()
    a, _ = ckpt.read_checkpoint(plain.checkpoint)
    b, _ = ckpt.read_checkpoint(sampled.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_items_skip_seeding_and_give_the_same_batches() -> None:
    from xmodal.tasks.generative_toy import PointDataset, collate
    from xmodal.train.sampling import epoch_loader

    class Seeded(PointDataset):
        deterministic_items = False

    points = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    kw = {"seed": 3, "epoch": 1, "rank": 0, "world_size": 1, "batch_size": 8, "skip": 2, "steps": 8, "num_workers": 0}
    fast = list(epoch_loader(PointDataset(points), collate, **kw))
    slow = list(epoch_loader(Seeded(points), collate, **kw))
    assert len(fast) == 6 and all(torch.equal(a["x"], b["x"]) and a["id"] == b["id"] for a, b in zip(fast, slow))
