"""2-D toy distributions for checking that a generative backbone learns, and a sample-based distance.

Distributions (``sample_toy(name, n)``): ``"grid"`` (a 5 x 5 grid of Gaussians), ``"moons"`` (two interleaved
half circles, sklearn's ``make_moons`` construction), ``"ring"`` (a noisy unit circle) and ``"swiss_roll"``
(the 2-D spiral of sklearn's ``make_swiss_roll``, x and z). All are scaled to about [-1, 1].
:func:`energy_distance` (Szekely & Rizzo) compares sample sets; :func:`gaussian_baseline` draws from the
single Gaussian fitted to the training set, the baseline a learnt model must beat.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.networks import timestep_embedding

TOY_NAMES = ("grid", "moons", "ring", "swiss_roll")


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points ``(n, 2)`` float32 from the named distribution."""
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    def rand(*shape):
        return torch.rand(*shape, generator=generator)

    if name == "grid":
        centres = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 5), indexing="ij"),
                              -1).reshape(-1, 2)
        idx = torch.randint(0, 25, (n,), generator=generator)
        return centres[idx] + 0.05 * randn(n, 2)
    if name == "moons":
        upper = rand(n) < 0.5
        angle = rand(n) * math.pi
        x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
        y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
        pts = torch.stack([x, y], -1) + 0.05 * randn(n, 2)
        return (pts - torch.tensor([0.5, 0.25])) / 1.2
    if name == "ring":
        angle = rand(n) * 2 * math.pi
        return torch.stack([torch.cos(angle), torch.sin(angle)], -1) + 0.05 * randn(n, 2)
    if name == "swiss_roll":
        t = 1.5 * math.pi * (1 + 2 * rand(n))
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) + 0.3 * randn(n, 2)
        return pts / 13.0
    raise ConfigError(f"unknown toy distribution {name!r}; expected one of {list(TOY_NAMES)}")


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with V-statistics (every pair, the
    diagonal included), the square of ``scipy.stats.energy_distance`` in one dimension. 0 iff equal laws."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ShapeError(f"need (n, d) and (m, d) samples, got {tuple(x.shape)} and {tuple(y.shape)}", source="y")
    x, y = x.detach().double(), y.detach().double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def gaussian_baseline(train: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws from N(mean, covariance) fitted to ``train`` ``(m, d)``."""
    mean = train.double().mean(0)
    cov = torch.cov(train.double().T)
    chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(cov.shape[0], dtype=cov.dtype))
    z = torch.randn(n, train.shape[1], generator=generator, dtype=torch.float64)
    return (mean + z @ chol.T).to(train.dtype)


class ToyDenoiser(nn.Module):
    """An MLP ``(x (batch, d), t) -> (batch, d)`` with a sinusoidal timestep embedding, for points."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, out_dim: int | None = None) -> None:
        super().__init__()
        self.temb = hidden
        layers: list[nn.Module] = [nn.Linear(dim + hidden, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, out_dim or dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, timestep_embedding(t, self.temb).to(x.dtype)], -1))
