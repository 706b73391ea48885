"""Learning a known 2-D distribution: the check that a generative backbone learns at all.

``data.distribution`` picks one of :data:`xmodal.generative.toy.TOY_NAMES` (a 5 x 5 grid of Gaussians, two
moons, a ring, a swiss roll); ``model.backbone`` picks the learner:

- ``diffusion``: Gaussian diffusion (epsilon prediction, simplified loss) over an MLP denoiser, with an EMA of the
  denoiser that samples (DDIM, ``model.sample_steps``); one optimizer, the trainer's single-loss step.
- ``gan``: an MLP generator and discriminator, the non-saturating loss with an R1 penalty on real points, two
  optimizers stepped in turn (discriminator, then generator: the task's own step) and an EMA of the generator.
- ``vae``: a VAE with a Gaussian likelihood (learnt variance); samples are draws of p(x | z), z ~ N(0, I).

Evaluation draws as many samples as the held-out set holds (from a fixed seed) and reports their squared
energy distance to it (:func:`~xmodal.generative.toy.energy_distance`, lower is better) beside two fixed
baselines: a single Gaussian fitted to the training set, and the training set's own distance to the held-out
points (the noise floor of a perfect model with that many samples).

Recipe sections: ``data: {distribution, n_train, n_val, seed}``, ``model: {backbone, hidden, depth, latent_dim,
timesteps, schedule, sample_steps, ema_decay, r1_gamma, d_lr, g_lr}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.generative.toy import TOY_NAMES, energy_distance, gaussian_baseline, sample_toy
from xmodal.tasks.base import PHASE_KEY, Phase, TaskBundle
from xmodal.tasks.generative_parts import mlp, seeded, update_ema, write_points

BACKBONES = ("diffusion", "gan", "vae")
EVAL_SEED = 1234  # the samples every evaluation scores come from this seed


@dataclass
class DataConfig:
    distribution: str = "grid"
    n_train: int = 4000
    n_val: int = 2000
    seed: int = 0


@dataclass
class ModelConfig:
    backbone: str = "diffusion"
    hidden: int = 128
    depth: int = 3
    latent_dim: int = 8  # GAN noise / VAE latent size
    timesteps: int = 1000
    schedule: str = "linear"
    sample_steps: int = 100  # DDIM steps when sampling
    ema_decay: float = 0.99
    r1_gamma: float = 1.0  # GAN: weight of the R1 penalty on real points
    d_lr: float | None = None  # GAN: the discriminator's and generator's learning rates (default train.lr)
    g_lr: float | None = None


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if d.distribution not in TOY_NAMES:
        raise ConfigError(f"data.distribution: expected one of {', '.join(TOY_NAMES)}, got {d.distribution!r}")
    for key in ("n_train", "n_val"):
        if getattr(d, key) < 2:
            raise ConfigError(f"data.{key}: must be >= 2, got {getattr(d, key)}")
    if m.backbone not in BACKBONES:
        raise ConfigError(f"model.backbone: expected one of {', '.join(BACKBONES)}, got {m.backbone!r}")
    for key in ("hidden", "depth", "latent_dim", "timesteps", "sample_steps"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if not 0.0 <= m.ema_decay < 1.0:
        raise ConfigError(f"model.ema_decay: must be in [0, 1), got {m.ema_decay}")
    if m.schedule not in ("linear", "cosine"):
        raise ConfigError(f"model.schedule: expected linear or cosine, got {m.schedule!r}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


class PointDataset(Dataset):
    """``{"x": (2,), "id": i}`` for ``n`` points of a toy distribution."""

    deterministic_items = True  # no augmentation: the trainer need not seed each item's random streams

    def __init__(self, points: torch.Tensor) -> None:
        self.points = points

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"x": self.points[index], "id": index}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"x": torch.stack([s["x"] for s in samples]), "id": [s["id"] for s in samples]}


# --------------------------------------------------------------------------------------------------- models
class DiffusionPoints(nn.Module):
    """Gaussian diffusion over points: ``forward(batch)`` returns the per-point simplified loss (timesteps and
    noise from torch's global generator, which the trainer seeds and checkpoints)."""

    ema_source = "denoiser"

    def __init__(self, m: ModelConfig) -> None:
        from xmodal.generative.diffusion import GaussianDiffusion, get_named_beta_schedule
        from xmodal.generative.gan import EMA
        from xmodal.generative.toy import ToyDenoiser

        super().__init__()
        self.denoiser = ToyDenoiser(2, m.hidden, m.depth)
        self.ema = EMA(self.denoiser, decay=m.ema_decay, use_num_updates=True)
        self.diffusion = GaussianDiffusion(get_named_beta_schedule(m.schedule, m.timesteps))
        self.sample_steps = m.sample_steps

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        t = torch.randint(0, self.diffusion.num_timesteps, (x.shape[0],), device=x.device)
        return {"loss": self.diffusion.training_losses(self.denoiser, x, t)["loss"]}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # the predicted x0 is clamped to [-1.5, 1.5], a box holding every toy distribution (the grid's corners
        # and the swiss roll's rim lie beyond 1, so images' [-1, 1] would cut them): an unclamped x0 from the
        # noisiest steps, where x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) amplifies the error, derails DDIM
        return self.diffusion.ddim_sample_loop(self.ema.module, (n, 2), num_steps=self.sample_steps,
                                               clip_denoised=False, denoised_fn=lambda x0: x0.clamp(-1.5, 1.5),
                                               generator=generator).float()


def _fsdp_block(module: nn.Module) -> bool:
    """Whether ``module`` is sharded by FSDP2 (``fully_shard`` makes it an ``FSDPModule``)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


class GanPoints(nn.Module):
    """A GAN over points; ``batch["phase"]`` says which half of the step the forward computes."""

    ema_source = "generator"

    def __init__(self, m: ModelConfig) -> None:
        from xmodal.generative.gan import EMA

        super().__init__()
        self.latent_dim, self.r1_gamma = m.latent_dim, m.r1_gamma
        self.generator = mlp(m.latent_dim, 2, m.hidden, m.depth, nn.LeakyReLU)
        self.discriminator = mlp(2, 1, m.hidden, m.depth, nn.LeakyReLU)
        self.ema = EMA(self.generator, decay=m.ema_decay, use_num_updates=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from xmodal.generative.gan import r1_penalty

        x = batch["x"]
        z = torch.randn(x.shape[0], self.latent_dim, device=x.device)
        if batch.get(PHASE_KEY) == "discriminator":
            if self.r1_gamma > 0 and _fsdp_block(self.discriminator):
                # R1's inner backward (inside this forward) makes FSDP2 free the discriminator's gathered
                # weights before the outer backward needs them: a raw "storage of size 0" error otherwise
                raise ConfigError("model.r1_gamma > 0 is not supported under train.strategy=fsdp (FSDP2 frees "
                                  "the discriminator's gathered weights after R1's inner backward): set "
                                  "model.r1_gamma=0 or train.strategy=ddp")
            real = x.detach().clone().requires_grad_(self.r1_gamma > 0)
            real_logits = self.discriminator(real)
            out = {"real": real_logits, "fake": self.discriminator(self.generator(z).detach())}
            if self.r1_gamma > 0:
                out["r1"] = r1_penalty(real_logits, real, gamma=self.r1_gamma)
            return out
        if batch.get(PHASE_KEY) == "generator":
            return {"fake": self.discriminator(self.generator(z))}
        raise ConfigError(f"GanPoints: batch['{PHASE_KEY}'] must be 'discriminator' or 'generator', got "
                          f"{batch.get(PHASE_KEY)!r}")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.ema.module(torch.randn(n, self.latent_dim, generator=generator, device=device))


class _GaussianDecoder(nn.Module):
    """A mean per point and one learnt log-variance per coordinate (the Gaussian likelihood)."""

    def __init__(self, latent_dim: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, 2, hidden, depth)
        self.logvar = nn.Parameter(torch.full((2,), -4.0))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.net(z)
        return mean, self.logvar.expand_as(mean)


class VaePoints(nn.Module):
    """A VAE over points: ``forward(batch)`` returns the per-point negative ELBO."""

    def __init__(self, m: ModelConfig) -> None:
        from xmodal.generative.vae import VAE

        super().__init__()
        self.vae = VAE(mlp(2, m.hidden, m.hidden, m.depth), _GaussianDecoder(m.latent_dim, m.hidden, m.depth),
                       latent_dim=m.latent_dim, enc_dim=m.hidden, likelihood="gaussian")

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from xmodal.generative.vae import gaussian_kl, reconstruction_nll

        x = batch["x"]
        out = self.vae(x)
        return {"loss": reconstruction_nll(x, out["decoded"], "gaussian") + self.vae.beta * gaussian_kl(
            out["mu"], out["logvar"])}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        from xmodal.generative.vae import reparameterize

        mean, logvar = self.vae.sample(n, generator=generator)
        return reparameterize(mean, logvar, generator)


# ---------------------------------------------------------------------------------------------- the task
def mean_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    return outputs["loss"].float().mean()


def discriminator_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    from xmodal.generative.gan import discriminator_loss as d_loss

    loss = d_loss(outputs["real"], outputs["fake"])
    return loss + outputs["r1"] if "r1" in outputs else loss


def generator_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    from xmodal.generative.gan import generator_loss as g_loss

    return g_loss(outputs["fake"])


def _sampler(model: nn.Module) -> DiffusionPoints | GanPoints | VaePoints:
    """``model`` as one of this task's models (the trainer hands its hooks the unwrapped model)."""
    if not isinstance(model, (DiffusionPoints, GanPoints, VaePoints)):
        raise TypeError(f"generative_toy: expected one of its models, got {type(model).__name__}")
    return model


def _points(dataset: Dataset) -> torch.Tensor:
    if not isinstance(dataset, PointDataset):
        raise TypeError(f"generative_toy: expected a PointDataset, got {type(dataset).__name__}")
    return dataset.points


def evaluate(model: nn.Module, dataset: Dataset) -> dict[str, float]:
    """The energy distance of ``len(dataset)`` samples (seed :data:`EVAL_SEED`) to the held-out points."""
    held = _points(dataset)
    samples = _sampler(model).sample(len(held), seeded(EVAL_SEED, held.device))
    return {"energy_distance": energy_distance(samples.cpu(), held)}


def baselines(train: torch.Tensor, dataset: Dataset) -> dict[str, dict[str, float]]:
    held = _points(dataset)
    fit = gaussian_baseline(train, len(held), seeded(EVAL_SEED))
    floor = train[: len(held)]
    return {"gaussian": {"energy_distance": energy_distance(fit, held)},
            "training_set": {"energy_distance": energy_distance(floor, held)}}


def generate(model: nn.Module, n: int, seed: int, out: Path) -> list[Path]:
    """``samples.csv`` and a scatter plot ``samples.png`` of ``n`` points drawn from ``seed``."""
    return write_points(_sampler(model).sample(n, seeded(seed)), out)


def build(cfg: dict[str, Any]) -> TaskBundle:
    d, m = _configs(cfg)
    gen = seeded(d.seed)
    train, held = sample_toy(d.distribution, d.n_train, gen), sample_toy(d.distribution, d.n_val, gen)
    model: nn.Module
    phases = None
    after_step: Callable[[nn.Module, int], None] | None = update_ema
    if m.backbone == "diffusion":
        model = DiffusionPoints(m)
    elif m.backbone == "gan":
        model = GanPoints(m)
        phases = [Phase("discriminator", discriminator_loss, ("discriminator.",), lr=m.d_lr, betas=(0.5, 0.9)),
                  Phase("generator", generator_loss, ("generator.",), lr=m.g_lr, betas=(0.5, 0.9))]
    else:
        model, after_step = VaePoints(m), None
    return TaskBundle(model=model, loss=mean_loss, train_set=PointDataset(train), collate=collate,
                      val_set=PointDataset(held), evaluate=evaluate, primary="energy_distance",
                      higher_is_better=False, baselines=lambda ds: baselines(train, ds), phases=phases,
                      after_step=after_step, generate=generate, modality="points",
                      artifacts={"generative": {"backbone": m.backbone, "distribution": d.distribution}})
