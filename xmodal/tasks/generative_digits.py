"""Class-conditional generation of sklearn's real 8x8 handwritten digits, scored by a classifier trained on real
digits.

``model.backbone``:

- ``diffusion``: Gaussian diffusion over the 64 pixels with classifier-free guidance (condition dropout with
  ``model.p_uncond`` in training, the guidance scale ``model.guidance`` at sampling, DDIM with
  ``model.sample_steps``), a label-conditioned MLP denoiser and an EMA of it that samples; ``model.schedule``
  (``linear`` or ``cosine`` betas) and ``model.prediction`` (the denoiser's target: ``epsilon``, ``v`` or
  ``x_start``).
- ``cvae``: a conditional VAE (one-hot label given to encoder and decoder, Gaussian likelihood with a learnt
  per-pixel variance); samples are the decoder's means for z ~ N(0, I).

The data are sklearn's ``load_digits`` (1,797 real digits, 0..16 grey levels), split by a permutation seeded with
``data.seed``: the first ``data.n_train`` for training, the rest held out. The evaluation (an sklearn MLP
classifier with one hidden layer of 64 units, fitted on the training digits once per process) draws
``eval_per_class`` samples of every class from a fixed seed and reports ``class_accuracy`` (how often the
classifier recognises the requested class; chance 0.1) and ``fid``, the Frechet distance between the
classifier's hidden features of the samples and of the held-out real digits (lower is better). Baselines: a
per-pixel independent Gaussian of each class, and the held-out digits themselves (their accuracy, and the
Frechet distance of one half against the other: the noise floor).

Recipe sections: ``data: {n_train, seed, eval_per_class}``, ``model: {backbone, hidden, timesteps, schedule,
prediction, sample_steps, p_uncond, guidance, ema_decay, latent_dim}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.generative.networks import timestep_embedding
from xmodal.tasks.base import TaskBundle
from xmodal.tasks.generative_parts import mlp, seeded, update_ema, write_images

BACKBONES = ("diffusion", "cvae")
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("epsilon", "v", "x_start")
CLASSES = 10
EVAL_SEED = 1234
TRAJECTORY_FPS = 10  # denoising.mp4: 50 DDIM steps play in five seconds


@dataclass
class DataConfig:
    n_train: int = 1200
    seed: int = 0
    eval_per_class: int = 100  # samples of each class drawn by every evaluation


@dataclass
class ModelConfig:
    backbone: str = "diffusion"
    hidden: int = 256
    timesteps: int = 1000
    schedule: str = "linear"  # beta schedule: linear or cosine (improved-diffusion's get_named_beta_schedule)
    prediction: str = "epsilon"  # what the denoiser predicts: epsilon, v or x_start
    sample_steps: int = 50  # DDIM steps
    p_uncond: float = 0.1  # classifier-free guidance: probability of dropping the label in training
    guidance: float = 2.0  # guidance scale at sampling (1: the conditional model alone)
    ema_decay: float = 0.999
    latent_dim: int = 16  # cvae


def _configs(cfg: dict[str, Any]) -> tuple[DataConfig, ModelConfig]:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    if not 10 <= d.n_train <= 1700:
        raise ConfigError(f"data.n_train: must be in [10, 1700] of sklearn's 1,797 digits, got {d.n_train}")
    if d.eval_per_class < 2:
        raise ConfigError(f"data.eval_per_class: must be >= 2, got {d.eval_per_class}")
    if m.backbone not in BACKBONES:
        raise ConfigError(f"model.backbone: expected one of {', '.join(BACKBONES)}, got {m.backbone!r}")
    for key in ("hidden", "timesteps", "sample_steps", "latent_dim"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if m.schedule not in SCHEDULES:
        raise ConfigError(f"model.schedule: expected one of {', '.join(SCHEDULES)}, got {m.schedule!r}")
    if m.prediction not in PREDICTIONS:
        raise ConfigError(f"model.prediction: expected one of {', '.join(PREDICTIONS)}, "
                          f"got {m.prediction!r}")
    if not 0.0 <= m.p_uncond < 1.0 or not 0.0 <= m.ema_decay < 1.0:
        raise ConfigError(f"model.p_uncond and model.ema_decay: must be in [0, 1), got {m.p_uncond}, {m.ema_decay}")
    return d, m


def check(cfg: dict[str, Any]) -> None:
    _configs(cfg)


# ------------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=4)
def split_digits(n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_held, y_held)``: sklearn's digits (0..16, float64 ``(n, 64)``) split by a
    permutation seeded with ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.data))
    x, y = digits.data.astype(np.float64), digits.target.astype(np.int64)
    return x[order[:n_train]], y[order[:n_train]], x[order[n_train:]], y[order[n_train:]]


@lru_cache(maxsize=4)
def digit_classifier(n_train: int, seed: int):
    """The scoring classifier: sklearn's MLP (64 hidden ReLU units) fitted on the training digits."""
    from sklearn.neural_network import MLPClassifier

    x, y, _, _ = split_digits(n_train, seed)
    return MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=0).fit(x, y)


def classifier_features(clf, x16: np.ndarray) -> np.ndarray:
    """The classifier's hidden layer (ReLU) on digits in sklearn's 0..16 scale: FID's feature space."""
    return np.maximum(x16 @ clf.coefs_[0] + clf.intercepts_[0], 0.0)


class DigitDataset(Dataset):
    """``{"x": (64,) in [-1, 1], "label": int, "id": i}``."""

    deterministic_items = True  # no augmentation: the trainer need not seed each item's random streams

    def __init__(self, x16: np.ndarray, labels: np.ndarray) -> None:
        self.x16, self.labels = x16, labels
        self.x = torch.tensor(x16 / 8.0 - 1.0, dtype=torch.float32)
        self.y = torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"x": self.x[index], "label": self.y[index], "id": index}

    def __getitems__(self, indices: list[int]) -> GatheredDigits:
        """The digits ``indices`` gathered by one indexing of each tensor (the trainer's loader calls this for a
        batch): at batch 256 it took ~1.2-1.5 ms of CPU time off a ~9-10 ms step, against 256 ``__getitem__``
        calls and ``collate``'s stacks (docs/generative.md)."""
        rows = torch.tensor(indices, dtype=torch.int64)
        return GatheredDigits(self.x[rows], self.y[rows], list(indices))


@dataclass(frozen=True)
class GatheredDigits:
    """A batch read at once by ``DigitDataset.__getitems__``; ``collate`` hands it on unchanged."""

    x: torch.Tensor  # (batch, 64) float32
    label: torch.Tensor  # (batch,) int64
    id: list[int]


def collate(samples: list[dict[str, Any]] | GatheredDigits) -> dict[str, Any]:
    """A batch from items (``DigitDataset[i]``) or from a gathered batch: the same tensors, bit for bit."""
    if isinstance(samples, GatheredDigits):
        return {"x": samples.x, "label": samples.label, "id": samples.id}
    return {"x": torch.stack([s["x"] for s in samples]), "label": torch.stack([s["label"] for s in samples]),
            "id": [s["id"] for s in samples]}


# ------------------------------------------------------------------------------------------------ models
class ConditionalMLP(nn.Module):
    """``(x (batch, 64), t, cond labels) -> eps`` (or v, or x0: ``model.prediction``); label
    ``num_classes`` is classifier-free guidance's null."""

    def __init__(self, dim: int = 64, hidden: int = 256, num_classes: int = CLASSES) -> None:
        super().__init__()
        self.temb = hidden
        self.label = nn.Embedding(num_classes + 1, hidden)
        self.inp = nn.Linear(dim, hidden)
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, dim))
        self.time = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.time(timestep_embedding(t, self.temb).to(x.dtype)) + self.label(cond)
        return self.net(h)


class DiffusionDigits(nn.Module):
    """Guided diffusion over digits; ``forward(batch)`` returns the per-digit simplified loss (condition dropout,
    timesteps and noise from torch's global generator, which the trainer seeds and checkpoints)."""

    ema_source = "denoiser"

    def __init__(self, m: ModelConfig) -> None:
        from xmodal.generative.diffusion import GaussianDiffusion, MeanType, get_named_beta_schedule
        from xmodal.generative.gan import EMA
        from xmodal.generative.guidance import ClassifierFreeGuidance

        super().__init__()
        self.denoiser = ClassifierFreeGuidance(ConditionalMLP(hidden=m.hidden), num_classes=CLASSES,
                                               p_uncond=m.p_uncond)
        self.ema = EMA(self.denoiser, decay=m.ema_decay, use_num_updates=True)
        self.diffusion = GaussianDiffusion(get_named_beta_schedule(m.schedule, m.timesteps),
                                           model_mean_type=cast(MeanType, m.prediction))
        self.sample_steps, self.guidance = m.sample_steps, m.guidance

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        t = torch.randint(0, self.diffusion.num_timesteps, (x.shape[0],), device=x.device)
        losses = self.diffusion.training_losses(self.denoiser, x, t, model_kwargs={"cond": batch["label"]})
        return {"loss": losses["loss"]}

    def _guided(self) -> Any:
        """The EMA's copy of the guided denoiser at the recipe's guidance scale."""
        from xmodal.generative.guidance import ClassifierFreeGuidance

        averaged = self.ema.module
        if not isinstance(averaged, ClassifierFreeGuidance):  # the EMA holds a copy of the guided denoiser
            raise TypeError(f"DiffusionDigits: the EMA averages a {type(averaged).__name__}")
        return averaged.guided(self.guidance)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Digits in [-1, 1] ``(n, 64)`` of the requested ``labels``."""
        return self.diffusion.ddim_sample_loop(self._guided(), (len(labels), 64), num_steps=self.sample_steps,
                                               model_kwargs={"cond": labels}, generator=generator).float()

    @torch.no_grad()
    def trajectory(self, labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        """Every DDIM step's sample ``(n, 64)`` in [-1, 1] (float32), the last being :meth:`sample`'s digits."""
        steps = self.diffusion.ddim_sample_loop_progressive(self._guided(), (len(labels), 64),
                                                            num_steps=self.sample_steps,
                                                            model_kwargs={"cond": labels}, generator=generator)
        return [step["sample"].float() for step in steps]


class _PixelGaussian(nn.Module):
    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim + CLASSES, 64, hidden, 2)
        self.logvar = nn.Parameter(torch.full((64,), -2.0))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.net(z)
        return mean, self.logvar.expand_as(mean)


class CvaeDigits(nn.Module):
    """A conditional VAE over digits; ``forward(batch)`` returns the per-digit negative ELBO."""

    def __init__(self, m: ModelConfig) -> None:
        from xmodal.generative.vae import VAE

        super().__init__()
        self.vae = VAE(mlp(64, m.hidden, m.hidden, 1), _PixelGaussian(m.latent_dim, m.hidden),
                       latent_dim=m.latent_dim, enc_dim=m.hidden, cond_dim=CLASSES, likelihood="gaussian")

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from xmodal.generative.vae import gaussian_kl, reconstruction_nll

        x, cond = batch["x"], nn.functional.one_hot(batch["label"], CLASSES).to(batch["x"].dtype)
        out = self.vae(x, cond)
        return {"loss": reconstruction_nll(x, out["decoded"], "gaussian") + gaussian_kl(out["mu"], out["logvar"])}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        device = next(self.parameters()).device
        cond = nn.functional.one_hot(labels.to(device), CLASSES).float()
        mean, _ = self.vae.sample(len(labels), cond, generator=generator)
        return mean


# -------------------------------------------------------------------------------------------------- task
def mean_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    return outputs["loss"].float().mean()


def _to16(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1.0) * 8.0).double().cpu().numpy()


def score(x16: np.ndarray, labels: np.ndarray, held16: np.ndarray, clf) -> dict[str, float]:
    """Class accuracy of the classifier on digits of the requested ``labels``, and the Frechet distance of
    their classifier features to the held-out digits'."""
    from xmodal.metrics.vision import fid_from_features

    return {"class_accuracy": float(np.mean(clf.predict(x16) == labels)),
            "fid": fid_from_features(classifier_features(clf, held16), classifier_features(clf, x16))}


def _sampler(model: nn.Module) -> DiffusionDigits | CvaeDigits:
    """``model`` as one of this task's models (the trainer hands its hooks the unwrapped model)."""
    if not isinstance(model, (DiffusionDigits, CvaeDigits)):
        raise TypeError(f"generative_digits: expected one of its models, got {type(model).__name__}")
    return model


def evaluate(model: nn.Module, dataset: Dataset, *, n_train: int, seed: int, per_class: int) -> dict[str, float]:
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    device = next(model.parameters()).device
    if not isinstance(dataset, DigitDataset):
        raise TypeError(f"generative_digits: expected a DigitDataset, got {type(dataset).__name__}")
    samples = _sampler(model).sample(labels.to(device), seeded(EVAL_SEED, device))
    return score(_to16(samples), labels.numpy(), dataset.x16, digit_classifier(n_train, seed))


def baselines(dataset: Dataset, *, n_train: int, seed: int, per_class: int) -> dict[str, dict[str, float]]:
    """A per-pixel Gaussian of each class (training mean and std, clipped to 0..16), and the real held-out
    digits (accuracy; Frechet distance of the first half to the second)."""
    from xmodal.metrics.vision import fid_from_features

    x, y, held, held_y = split_digits(n_train, seed)
    clf = digit_classifier(n_train, seed)
    rng = np.random.default_rng(EVAL_SEED)
    pixel = np.concatenate([rng.normal(x[y == c].mean(0), x[y == c].std(0), size=(per_class, 64)).clip(0, 16)
                            for c in range(CLASSES)])
    feats = classifier_features(clf, held)
    half = len(held) // 2
    return {"pixel_gaussian": score(pixel, np.repeat(np.arange(CLASSES), per_class), held, clf),
            "real_heldout": {"class_accuracy": float(clf.score(held, held_y)),
                             "fid": fid_from_features(feats[:half], feats[half:])}}


def generate(model: nn.Module, n: int, seed: int, out: Path) -> list[Path]:
    """``n`` digits of the classes 0, 1, ..., 9, 0, ... drawn from ``seed``: ``sample_<i>_class<c>.png`` (8x8
    upscaled to 64x64) and ``grid.png``; a diffusion model also writes ``denoising.mp4``, the grid at every DDIM
    step from noise to the digits (``TRAJECTORY_FPS``, the last frame held one second)."""
    from xmodal.generative.writers import write_mp4
    from xmodal.tasks.generative_parts import image_grid, to_uint8

    labels = torch.arange(n) % CLASSES
    device = next(model.parameters()).device
    sampler = _sampler(model)
    if isinstance(sampler, CvaeDigits):
        x = sampler.sample(labels.to(device), seeded(seed, device))
        return write_images(((x.clamp(-1, 1) + 1) / 2).reshape(n, 8, 8), out, labels.tolist())
    steps = sampler.trajectory(labels.to(device), seeded(seed, device))
    paths = write_images(((steps[-1].clamp(-1, 1) + 1) / 2).reshape(n, 8, 8), out, labels.tolist())
    frames = [image_grid(to_uint8(((x.clamp(-1, 1) + 1) / 2).reshape(n, 8, 8))) for x in steps]
    frames += [frames[-1]] * TRAJECTORY_FPS
    return [*paths, write_mp4(np.stack(frames), TRAJECTORY_FPS, out / "denoising.mp4")]


def build(cfg: dict[str, Any]) -> TaskBundle:
    from functools import partial

    d, m = _configs(cfg)
    x, y, held, held_y = split_digits(d.n_train, d.seed)
    model: nn.Module = DiffusionDigits(m) if m.backbone == "diffusion" else CvaeDigits(m)
    # keywords spelt out (not **dict) so mypy checks them against evaluate's and baselines' signatures
    run_evaluate = partial(evaluate, n_train=d.n_train, seed=d.seed, per_class=d.eval_per_class)
    run_baselines = partial(baselines, n_train=d.n_train, seed=d.seed, per_class=d.eval_per_class)
    return TaskBundle(model=model, loss=mean_loss, train_set=DigitDataset(x, y), collate=collate,
                      val_set=DigitDataset(held, held_y), evaluate=run_evaluate, primary="fid",
                      higher_is_better=False, baselines=run_baselines,
                      after_step=update_ema if m.backbone == "diffusion" else None, generate=generate,
                      modality="image", split="heldout",
                      artifacts={"generative": {"backbone": m.backbone, "classes": list(range(CLASSES))}})
