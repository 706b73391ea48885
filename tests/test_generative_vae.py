"""VAE: the closed-form KL (Eq. 3, exact form) against hand values and a Monte-Carlo estimate; the ELBO's
terms; a CVAE and the stochastic sequence VAE on real data (sklearn's 8x8 digits)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.vae import (
    VAE,
    StochasticSequenceVAE,
    gaussian_kl,
    gaussian_kl_between,
    reparameterize,
)
from xmodal.nn.encoders.cnn import CNN2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_gaussian_kl_hand_values():
    assert gaussian_kl(torch.zeros(3), torch.zeros(3)).item() == 0.0
    mu = torch.tensor([[1.0, 2.0], [0.0, -0.5]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(2.0)], [math.log(0.25), 0.0]], dtype=torch.float64)
    kl = gaussian_kl(mu, logvar)
    assert kl.shape == (2,)
    # 0.5 * sum(sigma^2 + mu^2 - 1 - log sigma^2)
    expected0 = 0.5 * ((1 + 1 - 1 - 0) + (2 + 4 - 1 - math.log(2)))
    expected1 = 0.5 * ((0.25 + 0 - 1 - math.log(0.25)) + (1 + 0.25 - 1 - 0))
    np.testing.assert_allclose(kl.numpy(), [expected0, expected1], rtol=1e-14)
    assert gaussian_kl(torch.zeros(4, 5, 6), torch.zeros(4, 5, 6)).shape == (4, 5)
    with pytest.raises(ShapeError):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_gaussian_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu = torch.tensor([0.7, -1.2, 0.1], dtype=torch.float64)
    logvar = torch.tensor([-0.5, 0.4, -1.5], dtype=torch.float64)
    n = 400_000
    z = reparameterize(mu.expand(n, 3), logvar.expand(n, 3), gen)
    std = torch.exp(0.5 * logvar)
    log_q = (-0.5 * ((z - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    samples = log_q - log_p
    mc, se = samples.mean().item(), samples.std().item() / math.sqrt(n)
    assert abs(gaussian_kl(mu, logvar).item() - mc) < 4 * se  # within four standard errors
    # against a learnt prior too
    mu_p, logvar_p = torch.tensor([0.2, 0.0, -0.3], dtype=torch.float64), torch.tensor([0.3, -0.2, 0.0],
                                                                                            dtype=torch.float64)
    std_p = torch.exp(0.5 * logvar_p)
    log_p2 = (-0.5 * ((z - mu_p) / std_p) ** 2 - torch.log(std_p) - 0.5 * math.log(2 * math.pi)).sum(-1)
    s2 = log_q - log_p2
    assert abs(gaussian_kl_between(mu, logvar, mu_p, logvar_p).item() - s2.mean().item()) < 4 * s2.std().item() / math.sqrt(n)
    torch.testing.assert_close(gaussian_kl_between(mu, logvar, torch.zeros(3, dtype=torch.float64),
                                                   torch.zeros(3, dtype=torch.float64)), gaussian_kl(mu, logvar))


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # (n, 1, 8, 8) in [0, 1]
    return x, torch.tensor(d.target)


class _Decoder(nn.Module):
    def __init__(self, zdim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(zdim, 128), nn.GELU(), nn.Linear(128, 64))

    def forward(self, z):
        return self.net(z).reshape(-1, 1, 8, 8)


def test_elbo_terms_and_conditional_vae_learn_digits():
    torch.manual_seed(0)
    x, y = _digits()
    cond = nn.functional.one_hot(y, 10).float()
    vae = VAE(CNN2d(1, (16, 32), out_dim=64), _Decoder(8 + 10), latent_dim=8, cond_dim=10, beta=0.5,
              likelihood="bernoulli")
    out = vae(x[:32], cond[:32], generator=torch.Generator().manual_seed(1))
    terms = vae.loss(x[:32], out)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    bce = nn.functional.binary_cross_entropy_with_logits(out["decoded"], x[:32], reduction="sum") / 32
    torch.testing.assert_close(terms["recon"], bce)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        idx = torch.randint(0, len(x), (64,))
        loss = vae.loss(x[idx], vae(x[idx], cond[idx]))["loss"]
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    samples = vae.sample(4, cond[:4])
    assert samples.shape == (4, 1, 8, 8)
    with pytest.raises(ShapeError):
        vae(x[:2])  # a CVAE needs its condition
    with pytest.raises(ConfigError):
        VAE(nn.Linear(3, 3), _Decoder(2), 2)


def test_stochastic_sequence_vae_masks_and_samples_many_outputs():
    torch.manual_seed(0)
    model = StochasticSequenceVAE(x_dim=6, cond_dim=4, latent_dim=3, hidden=16, beta=0.1)
    x, c = torch.randn(2, 9, 6), torch.randn(2, 9, 4)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    out = model(x, c)
    terms = model.loss(x, out, mask)
    recon = ((out["decoded"] - x) ** 2).sum(-1)
    torch.testing.assert_close(terms["recon"], recon[mask].mean())
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.1 * terms["kl"])
    a = model.sample(c, torch.Generator().manual_seed(0))
    b = model.sample(c, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and not torch.allclose(a, b)  # one-to-many: different draws, different speech


@pytest.mark.slow
def test_vae_with_gaussian_likelihood_learns_the_ring():
    """Samples x ~ p(x | z), z ~ N(0, I) beat a single-Gaussian fit by the energy distance on held-out points."""
    from xmodal.generative.toy import energy_distance, gaussian_baseline, sample_toy

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, o))

    class Decoder(nn.Module):  # Gaussian likelihood: a mean per point and a learnt log-variance
        def __init__(self) -> None:
            super().__init__()
            self.net, self.logvar = mlp(2, 2), nn.Parameter(torch.full((2,), -4.0))

        def forward(self, z):
            mean = self.net(z)
            return mean, self.logvar.expand_as(mean)

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train, held = sample_toy("ring", 4000, gen), sample_toy("ring", 1000, gen)
    vae = VAE(mlp(2, 64), Decoder(), latent_dim=2, enc_dim=64, likelihood="gaussian")
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    for _ in range(1000):
        x = train[torch.randint(0, 4000, (256,), generator=gen)]
        loss = vae.loss(x, vae(x))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    mean, logvar = vae.eval().sample(1000, generator=torch.Generator().manual_seed(1))
    samples = reparameterize(mean, logvar, torch.Generator().manual_seed(3))
    baseline = energy_distance(gaussian_baseline(train, 1000, torch.Generator().manual_seed(2)), held)
    assert energy_distance(samples, held) < 0.5 * baseline
