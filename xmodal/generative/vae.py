"""Variational autoencoders (Kingma & Welling): the ELBO of the survey's Eq. 2 with the closed-form KL of Eq. 3.

Eq. 3 as printed in the survey, ``sum sigma^2 + mu^2 - log(sigma) - 1``, drops the factor 1/2 and writes
``log sigma`` for ``log sigma^2``; xmodal uses the exact KL(N(mu, sigma^2) || N(0, I)) =
``0.5 * sum(sigma^2 + mu^2 - log sigma^2 - 1)``, which is what every VAE implementation minimises.

- :class:`GaussianHead` turns any feature ``(..., in_dim)`` into ``(mu, logvar)``: put it on any xmodal encoder.
- :class:`VAE` (optionally conditional, Sohn et al.'s CVAE): encoder -> head -> z -> decoder; ``loss`` is the
  negative ELBO with a ``beta`` weight on the KL (beta-VAE).
- :class:`StochasticSequenceVAE`: a per-frame latent with a learnt prior conditioned on another modality, the
  stochastic variant lip-to-speech models use (silent video frames -> speech frames; Yadav et al. 2021).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError

Likelihood = Literal["gaussian", "bernoulli", "mse"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dimension: a tensor of the leading shape."""
    if mu.shape != logvar.shape:
        raise ShapeError(f"mu {tuple(mu.shape)} != logvar {tuple(logvar.shape)}", source="logvar")
    return 0.5 * (torch.exp(logvar) + mu**2 - 1.0 - logvar).sum(-1)


def gaussian_kl_between(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) summed over the last dimension (a learnt prior)."""
    return 0.5 * (
        logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p) ** 2) * torch.exp(-logvar_p) - 1.0
    ).sum(-1)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: a sample that gradients flow through."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, exp(logvar)) summed over every axis but the first: ``(batch,)``."""
    nll = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))
    return nll.reshape(x.shape[0], -1).sum(1)


class GaussianHead(nn.Module):
    """``(..., in_dim) -> (mu, logvar)``, each ``(..., latent_dim)``: the Gaussian head of an encoder (or of
    a decoder, for a Gaussian likelihood with learnt variance). ``logvar`` is clamped to [-30, 20] as
    latent-diffusion's ``DiagonalGaussianDistribution`` does, so ``exp`` never overflows."""

    def __init__(self, in_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.proj(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)


def reconstruction_nll(x: torch.Tensor, decoded, likelihood: Likelihood) -> torch.Tensor:
    """-log p(x | z) per example ``(batch,)``: ``"gaussian"`` takes ``(mean, logvar)`` from the decoder,
    ``"bernoulli"`` logits, ``"mse"`` a mean (a unit-variance Gaussian up to its constant, the usual choice)."""
    if likelihood == "gaussian":
        mean, logvar = decoded
        return gaussian_nll(x, mean, logvar)
    if decoded.shape != x.shape:
        raise ShapeError(f"decoder output {tuple(decoded.shape)} != x {tuple(x.shape)}", source="decoder")
    if likelihood == "bernoulli":
        return F.binary_cross_entropy_with_logits(decoded, x, reduction="none").reshape(x.shape[0], -1).sum(1)
    if likelihood == "mse":
        return ((decoded - x) ** 2).reshape(x.shape[0], -1).sum(1)
    raise ConfigError(f"likelihood={likelihood!r}; expected 'gaussian', 'bernoulli' or 'mse'")


class VAE(nn.Module):
    """A (conditional) VAE around any encoder ``x (, mask) -> (batch, d)`` and decoder ``z' -> x``.

    Args:
        encoder: an xmodal encoder (its ``out_dim`` is read) or any module giving ``(batch, enc_dim)``.
        decoder: maps ``z`` (with ``cond`` concatenated in a CVAE) to the decoded output for ``likelihood``.
        latent_dim: size of z.
        enc_dim: the encoder's output size when it has no ``out_dim``.
        cond_dim: size of a condition vector; set for a conditional VAE (q(z | x, c), p(x | z, c)).
        beta: weight of the KL term (1 = the ELBO; beta-VAE otherwise).
        likelihood: ``"mse"``, ``"bernoulli"`` or ``"gaussian"`` (decoder returns ``(mean, logvar)``).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, enc_dim: int | None = None,
                 cond_dim: int = 0, beta: float = 1.0, likelihood: Likelihood = "mse") -> None:
        super().__init__()
        enc_dim = enc_dim if enc_dim is not None else getattr(encoder, "out_dim", None)
        if enc_dim is None:
            raise ConfigError("the encoder has no out_dim: pass enc_dim")
        self.encoder, self.decoder = encoder, decoder
        self.head = GaussianHead(enc_dim + cond_dim, latent_dim)
        self.latent_dim, self.cond_dim, self.beta, self.likelihood = latent_dim, cond_dim, beta, likelihood

    def _cond(self, cond: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if self.cond_dim == 0:
            if cond is not None:
                raise ConfigError("this VAE is unconditional (cond_dim=0) but a condition was given")
            return None
        if cond is None or cond.shape != (n, self.cond_dim):
            got = None if cond is None else tuple(cond.shape)
            raise ShapeError(f"a conditional VAE needs cond of shape ({n}, {self.cond_dim}), got {got}",
                             source="cond")
        return cond

    def encode(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of q(z | x[, c])."""
        h = self.encoder(x) if mask is None else self.encoder(x, mask=mask)
        cond = self._cond(cond, h.shape[0])
        return self.head(h if cond is None else torch.cat([h, cond], -1))

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None):
        cond = self._cond(cond, z.shape[0])
        return self.decoder(z if cond is None else torch.cat([z, cond], -1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x, cond, mask)
        z = reparameterize(mu, logvar, generator) if self.training else mu
        return {"mu": mu, "logvar": logvar, "z": z, "decoded": self.decode(z, cond)}

    def loss(self, x: torch.Tensor, out: dict) -> dict[str, torch.Tensor]:
        """Negative ELBO ``recon + beta * kl`` averaged over the batch, with both terms for logging."""
        recon = reconstruction_nll(x, out["decoded"], self.likelihood)
        kl = gaussian_kl(out["mu"], out["logvar"])
        return {"loss": (recon + self.beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}

    # the latent interface that latent diffusion uses
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decode(z)
        return out[0] if self.likelihood == "gaussian" else out

    @torch.no_grad()
    def sample(self, n: int, cond: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """Decode ``n`` draws of z ~ N(0, I) (with ``cond`` for a CVAE)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.decode(z, cond)


class StochasticSequenceVAE(nn.Module):
    """Per-frame latents for sequence-to-sequence generation with one-to-many outputs (lip-to-speech).

    The condition ``c`` ``(batch, time, cond_dim)`` (e.g. lip-frame features) drives a prior
    p(z_t | c_{<=t}); the posterior q(z_t | x, c) also sees the target ``x`` ``(batch, time, x_dim)`` (e.g. mel
    frames); the decoder maps ``(z_t, c_t)`` to x_t. GRUs keep it causal and small; swap in any module with the
    same shapes. The loss is the masked sum of the reconstruction and ``beta`` times KL(q || p) per frame.
    """

    def __init__(self, x_dim: int, cond_dim: int, latent_dim: int = 16, hidden: int = 128, beta: float = 1.0):
        super().__init__()
        self.prior_rnn = nn.GRU(cond_dim, hidden, batch_first=True)
        self.post_rnn = nn.GRU(cond_dim + x_dim, hidden, batch_first=True, bidirectional=True)
        self.prior_head, self.post_head = GaussianHead(hidden, latent_dim), GaussianHead(2 * hidden, latent_dim)
        self.decoder_rnn = nn.GRU(latent_dim + cond_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, x_dim)
        self.latent_dim, self.beta = latent_dim, beta

    def prior(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prior_head(self.prior_rnn(cond)[0])

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder_rnn(torch.cat([z, cond], -1))[0])

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        if x.shape[:2] != cond.shape[:2]:
            raise ShapeError(f"x {tuple(x.shape)} and cond {tuple(cond.shape)} need the same (batch, time)",
                             source="cond")
        mu_q, logvar_q = self.post_head(self.post_rnn(torch.cat([cond, x], -1))[0])
        mu_p, logvar_p = self.prior(cond)
        z = reparameterize(mu_q, logvar_q, generator) if self.training else mu_q
        return {"decoded": self.decode(z, cond), "mu_q": mu_q, "logvar_q": logvar_q, "mu_p": mu_p,
                "logvar_p": logvar_p}

    def loss(self, x: torch.Tensor, out: dict, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``mask`` ``(batch, time)``, True = valid frame; padded frames count for nothing."""
        recon = ((out["decoded"] - x) ** 2).sum(-1)  # (batch, time)
        kl = gaussian_kl_between(out["mu_q"], out["logvar_q"], out["mu_p"], out["logvar_p"])
        valid = torch.ones_like(recon) if mask is None else mask.to(recon.dtype)
        frames = valid.sum().clamp(min=1)
        recon, kl = (recon * valid).sum() / frames, (kl * valid).sum() / frames
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x ~ p(x | z, c) with z from the learnt prior: several draws give several plausible outputs."""
        mu_p, logvar_p = self.prior(cond)
        return self.decode(reparameterize(mu_p, logvar_p, generator), cond)
