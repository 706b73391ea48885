"""Latent diffusion (Rombach et al.): a Gaussian diffusion over the latents of a frozen autoencoder.

The autoencoder is any module with ``encode_latent(x) -> z`` and ``decode_latent(z) -> x``: a
:class:`~xmodal.generative.vae.VAE` (its posterior mean) or a :class:`~xmodal.generative.vq.VQVAE` (the
pre-quantisation latent, quantised on decoding, as latent-diffusion's VQ variant does). Latents are multiplied
by ``scale_factor`` so they have about unit variance (latent-diffusion's ``scale_by_std``: one over the std of
the first batch's latents, :meth:`LatentDiffusion.fit_scale_factor`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, cast

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.generative.diffusion import GaussianDiffusion


class _LatentCodec(Protocol):
    """What the autoencoder must offer besides being a module (checked when it is given)."""

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor: ...

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor: ...


class LatentDiffusion(nn.Module):
    scale_factor: torch.Tensor

    def __init__(self, autoencoder: nn.Module, denoiser: nn.Module, diffusion: GaussianDiffusion,
                 scale_factor: float = 1.0) -> None:
        super().__init__()
        for name in ("encode_latent", "decode_latent"):
            if not callable(getattr(autoencoder, name, None)):
                raise ConfigError(f"the autoencoder needs a {name}() method (VAE and VQVAE have one)")
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.denoiser = denoiser
        self.diffusion = diffusion
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()  # frozen: batch norm statistics and dropout stay in inference mode
        return self

    def _codec(self) -> _LatentCodec:
        return cast(_LatentCodec, self.autoencoder)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._codec().encode_latent(x) * self.scale_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._codec().decode_latent(z.to(self.scale_factor.dtype) / self.scale_factor)

    @torch.no_grad()
    def fit_scale_factor(self, x: torch.Tensor) -> float:
        """Set ``scale_factor = 1 / std(latents of x)`` and return it."""
        std = self._codec().encode_latent(x).float().std()
        self.scale_factor.fill_(1.0 / float(std))
        return float(self.scale_factor)

    def training_losses(self, x: torch.Tensor, t: torch.Tensor | None = None, model_kwargs: dict | None = None,
                        noise: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """The diffusion's per-example losses on the scaled latents of ``x`` (``t`` uniform when omitted)."""
        z = self.encode(x)
        if t is None:
            t = torch.randint(0, self.diffusion.num_timesteps, (z.shape[0],), generator=generator, device=z.device)
        if noise is None:
            noise = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        return self.diffusion.training_losses(self.denoiser, z, t, model_kwargs=model_kwargs, noise=noise)

    @torch.no_grad()
    def sample(self, latent_shape: Sequence[int], num_steps: int | None = None, eta: float = 0.0,
               generator: torch.Generator | None = None, model_kwargs: dict | None = None,
               denoiser: Callable | None = None) -> torch.Tensor:
        """Decoded samples: DDIM with ``num_steps`` (and ``eta``), else ancestral sampling over all T steps.
        ``denoiser`` overrides the trained one (e.g. its EMA or a guided wrapper)."""
        model = denoiser if denoiser is not None else self.denoiser
        device = self.scale_factor.device
        if num_steps is None:
            z = self.diffusion.p_sample_loop(model, latent_shape, clip_denoised=False, model_kwargs=model_kwargs,
                                             generator=generator, device=device)
        else:
            z = self.diffusion.ddim_sample_loop(model, latent_shape, num_steps=num_steps, eta=eta,
                                                clip_denoised=False, model_kwargs=model_kwargs,
                                                generator=generator, device=device)
        return self.decode(z.float())
