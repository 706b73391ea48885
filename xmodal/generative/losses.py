"""Likelihood terms of Gaussian diffusion: the KL between two Gaussians and the discretised Gaussian
log-likelihood of 8-bit data, as improved-diffusion's ``losses.py`` defines them (itself a port of Ho et al.'s
``diffusion_utils``). Same formulas, same constants; xmodal keeps whatever precision the inputs have (float64
from :class:`xmodal.generative.diffusion.GaussianDiffusion`).
"""

from __future__ import annotations

import math

import torch

from xmodal.errors import ShapeError

Number = float | int | torch.Tensor


def normal_kl(mean1: Number, logvar1: Number, mean2: Number, logvar2: Number) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise with broadcasting.

    Any argument may be a Python float (e.g. the standard-normal prior ``0.0, 0.0``); at least one must be a
    tensor, whose dtype and device the floats take.
    """
    like = next((v for v in (mean1, logvar1, mean2, logvar2) if isinstance(v, torch.Tensor)), None)
    if like is None:
        raise ShapeError("at least one argument must be a tensor", source="normal_kl")
    m1, lv1, m2, lv2 = (
        v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=like.dtype, device=like.device)
        for v in (mean1, logvar1, mean2, logvar2)
    )
    return 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF that the reference uses (not ``erf``)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """Log-probability (nats) of ``x``, 8-bit data rescaled to [-1, 1], under a Gaussian discretised to bins of
    half-width 1/255; the edge bins (``x < -0.999``, ``x > 0.999``) take the whole tail. Logs are clamped at
    1e-12. All three tensors have one shape; the result has it too."""
    if not x.shape == means.shape == log_scales.shape:
        raise ShapeError(
            f"x {tuple(x.shape)}, means {tuple(means.shape)} and log_scales {tuple(log_scales.shape)} "
            "must have one shape",
            source="discretized_gaussian_log_likelihood",
        )
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the first: ``(batch, ...) -> (batch,)``."""
    return x.mean(dim=tuple(range(1, x.ndim))) if x.ndim > 1 else x
