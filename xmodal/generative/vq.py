"""VQ-VAE tokenizers (van den Oord et al.) with EMA codebook updates and dead-code restarts, for images (2-D),
audio (1-D, JukeBox-style strided convolutions) and motion (1-D over time, pose features as channels).

The codebook follows the EMA update of VQ-VAE's appendix (sonnet's ``VectorQuantizerEMA``): per code an EMA of
its count ``N`` and of the sum of the vectors assigned to it ``m``, the count Laplace-smoothed,
``N_i <- (N_i + eps) / (n + K eps) * n``, and the code set to ``m_i / N_i``. A code whose EMA count falls below
``dead_threshold`` is restarted, as JukeBox does, on a random encoder output of the batch (its count and sum
reset to one such vector, so it is a proper cluster from then on). Under ``torch.distributed`` the counts and
sums are summed over ranks and the restart vectors come from rank 0, so every rank keeps the same codebook.
Only the commitment loss ``beta * ||z - sg(q)||^2`` trains the encoder towards the codes; gradients pass the
quantiser straight through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError


class VectorQuantizerEMA(nn.Module):
    """``forward(z)`` with ``z`` channels-first ``(batch, dim, *axes)`` -> dict with ``quantized`` (same shape,
    straight-through), ``codes`` ``(batch, *axes)`` int64, ``commitment`` (scalar), ``perplexity`` (of the
    batch's code frequencies), ``usage`` (fraction of codes used in the batch) and ``restarted`` (codes
    restarted by this step)."""

    codebook: torch.Tensor
    ema_count: torch.Tensor
    ema_sum: torch.Tensor

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, beta: float = 0.25, eps: float = 1e-5,
                 dead_threshold: float = 1.0) -> None:
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise ConfigError(f"num_codes={num_codes} must be >= 2 and dim={dim} >= 1")
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.beta, self.eps, self.dead_threshold = decay, beta, eps, dead_threshold
        codebook = torch.randn(num_codes, dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", codebook.clone())

    def _flat(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim < 2 or z.shape[1] != self.dim:
            raise ShapeError(f"expected (batch, {self.dim}, ...), got {tuple(z.shape)}", source="z")
        return z.movedim(1, -1).reshape(-1, self.dim)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code (squared Euclidean distance) for each row of ``flat`` ``(n, dim)``."""
        dist2 = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                 + self.codebook.pow(2).sum(1)[None])
        return dist2.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(batch, *axes)`` -> vectors channels-first ``(batch, dim, *axes)``."""
        if int(codes.min()) < 0 or int(codes.max()) >= self.num_codes:
            raise ShapeError(f"codes must lie in 0..{self.num_codes - 1}", source="codes")
        return F.embedding(codes, self.codebook).movedim(-1, 1)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(codes, self.num_codes).to(flat.dtype)  # (n, K)
        counts, sums = onehot.sum(0), onehot.t() @ flat
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < self.dead_threshold
        if dead.any():
            picks = torch.randint(0, flat.shape[0], (self.num_codes,), device=flat.device)
            fresh = flat[picks]
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(fresh, 0)
            self.codebook[dead] = fresh[dead]
            self.ema_sum[dead] = fresh[dead]
            self.ema_count[dead] = 1.0
        return dead

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = self._flat(z)
        codes = self.nearest(flat.detach())
        quantized_flat = self.codebook[codes]
        counts = torch.bincount(codes, minlength=self.num_codes).to(flat.dtype)
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        usage = (counts > 0).to(flat.dtype).mean()
        restarted = torch.zeros(self.num_codes, dtype=torch.bool, device=z.device)
        if self.training:
            restarted = self._ema_update(flat.detach(), codes)
        commitment = self.beta * F.mse_loss(flat, quantized_flat.detach())
        quantized_flat = flat + (quantized_flat - flat).detach()  # straight-through
        shape = (z.shape[0], *z.shape[2:], self.dim)
        return {
            "quantized": quantized_flat.reshape(shape).movedim(-1, 1),
            "codes": codes.reshape(shape[:-1]),
            "commitment": commitment,
            "perplexity": perplexity,
            "usage": usage,
            "restarted": restarted,
        }


def _conv(dims: int):
    return {1: (nn.Conv1d, nn.ConvTranspose1d), 2: (nn.Conv2d, nn.ConvTranspose2d)}[dims]


class _ResBlock(nn.Module):
    def __init__(self, dims: int, ch: int) -> None:
        super().__init__()
        conv, _ = _conv(dims)
        self.net = nn.Sequential(nn.ReLU(), conv(ch, ch, 3, padding=1), nn.ReLU(), conv(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def conv_encoder(dims: int, in_channels: int, hidden: int, latent_dim: int, downsample: int) -> nn.Module:
    """Strided convolutions halving each axis ``downsample`` times, two residual blocks, a 1x1 to the latent."""
    conv, _ = _conv(dims)
    layers: list[nn.Module] = [conv(in_channels, hidden, 3, padding=1)]
    for _ in range(downsample):
        layers += [nn.ReLU(), conv(hidden, hidden, 4, stride=2, padding=1)]
    layers += [_ResBlock(dims, hidden), _ResBlock(dims, hidden), nn.ReLU(), conv(hidden, latent_dim, 1)]
    return nn.Sequential(*layers)


def conv_decoder(dims: int, out_channels: int, hidden: int, latent_dim: int, upsample: int) -> nn.Module:
    """The mirror of :func:`conv_encoder` with transposed convolutions."""
    conv, deconv = _conv(dims)
    layers: list[nn.Module] = [conv(latent_dim, hidden, 3, padding=1), _ResBlock(dims, hidden),
                               _ResBlock(dims, hidden)]
    for _ in range(upsample):
        layers += [nn.ReLU(), deconv(hidden, hidden, 4, stride=2, padding=1)]
    layers += [nn.ReLU(), conv(hidden, out_channels, 3, padding=1)]
    return nn.Sequential(*layers)


class VQVAE(nn.Module):
    """Encoder -> :class:`VectorQuantizerEMA` -> decoder. ``channels_last`` inputs ``(batch, time, features)``
    (motion) are moved to channels-first for the convolutions and back.

    ``forward(x)`` returns the quantiser's dict plus ``reconstruction`` and ``loss`` (MSE + commitment).
    ``encode_codes`` / ``decode_codes`` are the tokenizer; ``encode_latent`` / ``decode_latent`` (continuous
    pre-quantisation latents, quantised on decoding) serve latent diffusion.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, quantizer: VectorQuantizerEMA,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.encoder, self.decoder, self.quantizer = encoder, decoder, quantizer
        self.channels_last = channels_last

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2) if self.channels_last else x

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2) if self.channels_last else x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.quantizer(self.encoder(self._in(x)))
        recon = self._out(self.decoder(out["quantized"]))
        if recon.shape != x.shape:
            raise ShapeError(f"reconstruction {tuple(recon.shape)} != input {tuple(x.shape)}: the input length "
                             "must be a multiple of the downsampling factor", source="x")
        out["reconstruction"] = recon
        out["recon_loss"] = F.mse_loss(recon, x)
        out["loss"] = out["recon_loss"] + out["commitment"]
        return out

    @torch.no_grad()
    def encode_codes(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(self._in(x))
        flat = self.quantizer._flat(z)
        return self.quantizer.nearest(flat).reshape(z.shape[0], *z.shape[2:])

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self._out(self.decoder(self.quantizer.lookup(codes)))

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._in(x))

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        flat = self.quantizer._flat(z)
        codes = self.quantizer.nearest(flat).reshape(z.shape[0], *z.shape[2:])
        return self._out(self.decoder(self.quantizer.lookup(codes)))


def _vqvae(dims: int, channels: int, num_codes: int, latent_dim: int, hidden: int, downsample: int,
           channels_last: bool = False, **quantizer_kwargs) -> VQVAE:
    return VQVAE(conv_encoder(dims, channels, hidden, latent_dim, downsample),
                 conv_decoder(dims, channels, hidden, latent_dim, downsample),
                 VectorQuantizerEMA(num_codes, latent_dim, **quantizer_kwargs), channels_last)


def image_vqvae(in_channels: int = 3, num_codes: int = 512, latent_dim: int = 64, hidden: int = 128,
                downsample: int = 2, **quantizer_kwargs) -> VQVAE:
    """Images ``(batch, C, H, W)`` -> codes ``(batch, H / 2^d, W / 2^d)``."""
    return _vqvae(2, in_channels, num_codes, latent_dim, hidden, downsample, **quantizer_kwargs)


def audio_vqvae(in_channels: int = 1, num_codes: int = 2048, latent_dim: int = 64, hidden: int = 64,
                downsample: int = 3, **quantizer_kwargs) -> VQVAE:
    """Waveforms ``(batch, 1, T)`` -> codes ``(batch, T / 2^d)`` (JukeBox's bottom level hops 8 samples)."""
    return _vqvae(1, in_channels, num_codes, latent_dim, hidden, downsample, **quantizer_kwargs)


def motion_vqvae(pose_dim: int, num_codes: int = 512, latent_dim: int = 64, hidden: int = 128,
                 downsample: int = 2, **quantizer_kwargs) -> VQVAE:
    """Motion ``(batch, frames, pose_dim)`` (e.g. joints x 3) -> codes ``(batch, frames / 2^d)``, as motion
    tokenizers (T2M-GPT, Bailando) quantise time windows."""
    return _vqvae(1, pose_dim, num_codes, latent_dim, hidden, downsample, channels_last=True,
                  **quantizer_kwargs)


def codebook_stats(codes: torch.Tensor, num_codes: int) -> dict[str, float]:
    """Usage (fraction of codes used) and perplexity of a set of codes, for logging over a whole epoch."""
    counts = torch.bincount(codes.reshape(-1), minlength=num_codes).double()
    probs = counts / counts.sum()
    return {"usage": float((counts > 0).double().mean()),
            "perplexity": float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))}


__all__: Sequence[str] = [
    "VQVAE", "VectorQuantizerEMA", "audio_vqvae", "codebook_stats", "conv_decoder", "conv_encoder",
    "image_vqvae", "motion_vqvae",
]
