"""Gaussian diffusion (DDPM, Eq. 5 of the survey) with improved-diffusion's names and conventions, in float64.

``t`` is an int64 tensor of shape ``(batch,)`` with values ``0 .. T-1``; ``t = 0`` is the first noising step
(x_1 in the papers' notation). Every coefficient is gathered from float64 numpy arrays into float64 tensors
(improved-diffusion casts them to float32; xmodal does not), and every quantity derived from them stays float64.
The model is any callable ``model(x_t, t, **model_kwargs)``; it receives ``x_t`` in the dtype of its first
floating parameter (float32 for a usual ``nn.Module``) and its output is promoted back to float64.

Model outputs: ``"epsilon"`` (the noise), ``"x_start"`` (x_0), ``"v"`` (``sqrt(abar) eps - sqrt(1 - abar) x_0``,
Salimans & Ho) or ``"previous_x"``. Variances: ``"fixed_small"`` (the posterior variance), ``"fixed_large"``
(beta), ``"learned"`` (log-variance) and ``"learned_range"`` (improved-diffusion's interpolation between the
two, the model emitting ``2 C`` channels). Losses: ``"mse"`` (the simplified loss; with a learned variance the
hybrid loss ``mse + vb``), ``"rescaled_mse"``, ``"kl"`` and ``"rescaled_kl"`` (the variational bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl

MeanType = Literal["epsilon", "x_start", "v", "previous_x"]
VarType = Literal["fixed_small", "fixed_large", "learned", "learned_range"]
LossType = Literal["mse", "rescaled_mse", "kl", "rescaled_kl"]
Model = Callable[..., torch.Tensor]

__all__ = [
    "GaussianDiffusion",
    "betas_for_alpha_bar",
    "discretized_gaussian_log_likelihood",
    "extract",
    "get_named_beta_schedule",
    "normal_kl",
]


def get_named_beta_schedule(name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """``"linear"``: Ho et al.'s schedule scaled to any T (``scale = 1000 / T``, ``linspace(scale * 1e-4,
    scale * 0.02, T)``; not validated, so T < 20 gives betas above 1 as in the reference). ``"cosine"``:
    Nichol & Dhariwal, ``abar(t) = cos((t + 0.008) / 1.008 * pi / 2) ** 2``, betas capped at 0.999."""
    if name == "linear":
        scale = 1000 / num_diffusion_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)
    if name == "cosine":
        return betas_for_alpha_bar(
            num_diffusion_timesteps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    raise ConfigError(f"unknown beta schedule {name!r}; expected 'linear' or 'cosine'")


def betas_for_alpha_bar(
    num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> np.ndarray:
    """Betas that discretise a cumulative ``alpha_bar`` on [0, 1]: ``min(1 - abar((i+1)/T) / abar(i/T), max)``."""
    n = num_diffusion_timesteps
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return np.array(betas, dtype=np.float64)


def extract(arr: np.ndarray, t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``arr[t]`` as a float64 tensor broadcast to ``shape`` (``t``: ``(batch,)``, ``shape[0] == batch``)."""
    values = torch.from_numpy(np.asarray(arr, dtype=np.float64)).to(t.device)[t.long()]
    return values.reshape(-1, *([1] * (len(shape) - 1))).expand(*shape)


def _model_dtype(model: Model, fallback: torch.dtype) -> torch.dtype:
    if isinstance(model, nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    return fallback


class GaussianDiffusion:
    """Training losses, variational bound and samplers of a Gaussian diffusion with ``betas`` (1-D, in (0, 1]).

    Arrays (float64 numpy, length T): ``betas``, ``alphas_cumprod``, ``alphas_cumprod_prev`` (``[1, abar_0, ...,
    abar_{T-2}]``), ``alphas_cumprod_next``, ``posterior_variance``, ``posterior_log_variance_clipped``
    (``log([pv[1], pv[1], pv[2], ...])``), ``posterior_mean_coef1``, ``posterior_mean_coef2`` and the square
    roots improved-diffusion keeps. ``timestep_map[t]`` is the timestep the model is given (the identity,
    except for a chain made by :meth:`respaced`).
    """

    def __init__(
        self,
        betas: Sequence[float] | np.ndarray,
        model_mean_type: MeanType = "epsilon",
        model_var_type: VarType = "fixed_small",
        loss_type: LossType = "mse",
        rescale_timesteps: bool = False,
        timestep_map: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ShapeError(f"betas must be a non-empty 1-D array, got shape {betas.shape}", source="betas")
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ConfigError("every beta must lie in (0, 1]")
        for value, allowed, key in (
            (model_mean_type, get_args(MeanType), "model_mean_type"),
            (model_var_type, get_args(VarType), "model_var_type"),
            (loss_type, get_args(LossType), "loss_type"),
        ):
            if value not in allowed:
                raise ConfigError(f"{key}={value!r}; expected one of {list(allowed)}")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])
        self.timestep_map = np.arange(self.num_timesteps) if timestep_map is None else np.asarray(timestep_map)
        self.original_num_steps = int(self.timestep_map.max()) + 1 if timestep_map is not None else len(betas)

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_next = np.append(self.alphas_cumprod[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        # q(x_{t-1} | x_t, x_0); the variance is 0 at t = 0, so its log is clipped to the value at t = 1.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        pv_tail = self.posterior_variance[1:] if self.num_timesteps > 1 else self.posterior_variance
        self.posterior_log_variance_clipped = np.log(np.append(pv_tail[0], self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        )

    # ---- the forward process -------------------------------------------------------------------------------

    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of q(x_t | x_0), each of ``x_start``'s shape (float64)."""
        shape = x_start.shape
        mean = extract(self.sqrt_alphas_cumprod, t, shape) * x_start
        return mean, extract(1.0 - self.alphas_cumprod, t, shape), extract(
            self.log_one_minus_alphas_cumprod, t, shape
        )

    def q_sample(
        self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0): ``sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise`` (float64)."""
        self._check_t(t, x_start)
        if noise is None:
            noise = torch.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ShapeError(f"noise {tuple(noise.shape)} != x_start {tuple(x_start.shape)}", source="noise")
        shape = x_start.shape
        return (
            extract(self.sqrt_alphas_cumprod, t, shape) * x_start
            + extract(self.sqrt_one_minus_alphas_cumprod, t, shape) * noise
        )

    def q_posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0), float64 of ``x_t``'s full shape."""
        if x_start.shape != x_t.shape:
            raise ShapeError(f"x_start {tuple(x_start.shape)} != x_t {tuple(x_t.shape)}", source="x_start")
        self._check_t(t, x_t)
        shape = x_t.shape
        mean = (
            extract(self.posterior_mean_coef1, t, shape) * x_start
            + extract(self.posterior_mean_coef2, t, shape) * x_t
        )
        return mean, extract(self.posterior_variance, t, shape), extract(
            self.posterior_log_variance_clipped, t, shape
        )

    # ---- conversions between parameterisations ----------------------------------------------------------

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        shape = x_t.shape
        return extract(self.sqrt_recip_alphas_cumprod, t, shape) * x_t - extract(
            self.sqrt_recipm1_alphas_cumprod, t, shape
        ) * eps

    def predict_eps_from_xstart(
        self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor
    ) -> torch.Tensor:
        shape = x_t.shape
        return (extract(self.sqrt_recip_alphas_cumprod, t, shape) * x_t - pred_xstart) / extract(
            self.sqrt_recipm1_alphas_cumprod, t, shape
        )

    def predict_xstart_from_xprev(
        self, x_t: torch.Tensor, t: torch.Tensor, xprev: torch.Tensor
    ) -> torch.Tensor:
        shape = x_t.shape
        return extract(1.0 / self.posterior_mean_coef1, t, shape) * xprev - extract(
            self.posterior_mean_coef2 / self.posterior_mean_coef1, t, shape
        ) * x_t

    def get_v(self, x_start: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The v target, ``sqrt(abar_t) eps - sqrt(1 - abar_t) x_0``."""
        shape = x_start.shape
        return extract(self.sqrt_alphas_cumprod, t, shape) * noise - extract(
            self.sqrt_one_minus_alphas_cumprod, t, shape
        ) * x_start

    def predict_xstart_from_v(self, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        shape = x_t.shape
        return extract(self.sqrt_alphas_cumprod, t, shape) * x_t - extract(
            self.sqrt_one_minus_alphas_cumprod, t, shape
        ) * v

    # ---- the reverse process ----------------------------------------------------------------------------

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> None:
        if t.ndim != 1 or t.shape[0] != x.shape[0] or t.is_floating_point():
            raise ShapeError(
                f"t must be an integer tensor of shape ({x.shape[0]},), got {t.dtype} {tuple(t.shape)}",
                source="t",
            )
        if int(t.min()) < 0 or int(t.max()) >= self.num_timesteps:
            raise ShapeError(f"t must lie in 0..{self.num_timesteps - 1}", source="t")

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """What the model sees for step ``t``: the original timestep, scaled to 0..1000 if asked."""
        mapped = torch.from_numpy(self.timestep_map).to(t.device)[t.long()]
        if self.rescale_timesteps:
            return mapped.double() * (1000.0 / self.original_num_steps)
        return mapped

    def run_model(
        self, model: Model, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None = None
    ) -> torch.Tensor:
        """``model(x, t, **model_kwargs)`` with ``x`` in the model's dtype; the output in float64."""
        dtype = _model_dtype(model, x.dtype)
        return model(x.to(dtype), self.model_timesteps(t), **(model_kwargs or {})).double()

    def p_mean_variance(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        model_output: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """p(x_{t-1} | x_t): ``{"mean", "variance", "log_variance", "pred_xstart"}``, float64 of ``x``'s shape.
        ``model_output`` skips the model call (used by the hybrid loss and guidance)."""
        x = x.double()
        self._check_t(t, x)
        out = self.run_model(model, x, t, model_kwargs) if model_output is None else model_output.double()
        channels = x.shape[1]
        if self.model_var_type in ("learned", "learned_range"):
            if out.shape != (x.shape[0], 2 * channels, *x.shape[2:]):
                raise ShapeError(
                    f"a learned variance needs a model output of shape {(x.shape[0], 2 * channels, *x.shape[2:])},"
                    f" got {tuple(out.shape)}",
                    source="model_output",
                )
            out, var_values = torch.split(out, channels, dim=1)
            if self.model_var_type == "learned":
                log_variance = var_values
            else:
                min_log = extract(self.posterior_log_variance_clipped, t, x.shape)
                max_log = extract(np.log(self.betas), t, x.shape)
                frac = (var_values + 1) / 2  # the model's [-1, 1] spans [posterior variance, beta]
                log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            if self.model_var_type == "fixed_large":
                # the first variance is the posterior's, for a better decoder likelihood (as the reference)
                var = np.append(self.posterior_variance[1:2], self.betas[1:])
                variance, log_variance = extract(var, t, x.shape), extract(np.log(var), t, x.shape)
            else:
                variance = extract(self.posterior_variance, t, x.shape)
                log_variance = extract(self.posterior_log_variance_clipped, t, x.shape)
        if out.shape != x.shape:
            raise ShapeError(f"model output {tuple(out.shape)} != x {tuple(x.shape)}", source="model_output")

        def process(x0: torch.Tensor) -> torch.Tensor:
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            return x0.clamp(-1, 1) if clip_denoised else x0

        if self.model_mean_type == "previous_x":
            pred_xstart = process(self.predict_xstart_from_xprev(x, t, out))
            mean = out
        else:
            if self.model_mean_type == "x_start":
                pred_xstart = process(out)
            elif self.model_mean_type == "v":
                pred_xstart = process(self.predict_xstart_from_v(x, t, out))
            else:
                pred_xstart = process(self.predict_xstart_from_eps(x, t, out))
            mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": pred_xstart}

    def p_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One ancestral step x_t -> x_{t-1} (no noise at t = 0): ``{"sample", "pred_xstart"}``."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
        nonzero = (t != 0).double().reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def _initial(self, shape, noise, generator, device) -> torch.Tensor:
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ShapeError(f"noise {tuple(noise.shape)} != shape {tuple(shape)}", source="noise")
            return noise.double()
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float64, device=device)

    def p_sample_loop_progressive(
        self,
        model: Model,
        shape: Sequence[int],
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Ancestral sampling from T-1 down to 0, yielding each step's ``{"sample", "pred_xstart"}``."""
        x = self._initial(shape, noise, generator, device)
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)
            with torch.no_grad():
                out = self.p_sample(model, x, t, clip_denoised, denoised_fn, model_kwargs, generator)
            yield out
            x = out["sample"]

    def p_sample_loop(self, model: Model, shape: Sequence[int], **kwargs: Any) -> torch.Tensor:
        """Ancestral sampling (DDPM); the final float64 sample. Reproducible with ``generator=``."""
        final = None
        for step in self.p_sample_loop_progressive(model, shape, **kwargs):
            final = step
        assert final is not None  # the loop runs at least once: T >= 1
        return final["sample"]

    def ddim_timesteps(self, num_steps: int) -> list[int]:
        """Decreasing timesteps for ``num_steps`` DDIM steps, spaced as diffusers' ``"leading"`` spacing (its
        default): ``arange(num_steps) * (T // num_steps)``, reversed."""
        if not 1 <= num_steps <= self.num_timesteps:
            raise ConfigError(f"num_steps={num_steps} must lie in 1..{self.num_timesteps}")
        stride = self.num_timesteps // num_steps
        return [i * stride for i in reversed(range(num_steps))]

    def ddim_sample(
        self,
        model: Model,
        x: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al. Eq. 12) from ``t`` to ``t_prev`` (default ``t - 1``; -1 means x_0, with
        ``abar = 1``). ``eta = 0`` is deterministic."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        x = x.double()
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = extract(self.alphas_cumprod, t, x.shape)
        if t_prev is None:
            t_prev = t - 1
        abar_ext = np.append(self.alphas_cumprod, 1.0)  # index -1 reads 1.0: the clean data
        alpha_bar_prev = extract(abar_ext, torch.where(t_prev < 0, torch.full_like(t_prev, -1), t_prev), x.shape)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        mean = out["pred_xstart"] * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        sample = mean
        if eta > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)
            sample = mean + (t_prev >= 0).double().reshape(-1, *([1] * (x.ndim - 1))) * sigma * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop(
        self,
        model: Model,
        shape: Sequence[int],
        num_steps: int | None = None,
        timesteps: Sequence[int] | None = None,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DDIM over ``timesteps`` (decreasing), or ``num_steps`` spaced as :meth:`ddim_timesteps`, or all T."""
        final = None
        for step in self.ddim_sample_loop_progressive(model, shape, num_steps, timesteps, eta, noise, clip_denoised,
                                                      denoised_fn, model_kwargs, device, generator):
            final = step
        assert final is not None  # at least one timestep: checked by the progressive loop
        return final["sample"]

    def ddim_sample_loop_progressive(
        self,
        model: Model,
        shape: Sequence[int],
        num_steps: int | None = None,
        timesteps: Sequence[int] | None = None,
        eta: float = 0.0,
        noise: torch.Tensor | None = None,
        clip_denoised: bool = True,
        denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """:meth:`ddim_sample_loop` yielding each step's ``{"sample", "pred_xstart"}`` (the last sample is the
        loop's result, bit for bit)."""
        if timesteps is None:
            timesteps = self.ddim_timesteps(num_steps or self.num_timesteps)
        steps = [int(s) for s in timesteps]
        if any(a <= b for a, b in pairwise(steps)) or min(steps) < 0 or max(steps) >= self.num_timesteps:
            raise ConfigError(f"timesteps must decrease strictly within 0..{self.num_timesteps - 1}")
        x = self._initial(shape, noise, generator, device)
        for cur, prev in zip(steps, steps[1:] + [-1]):
            t = torch.full((x.shape[0],), cur, dtype=torch.int64, device=x.device)
            t_prev = torch.full_like(t, prev)
            with torch.no_grad():
                out = self.ddim_sample(model, x, t, t_prev, clip_denoised, denoised_fn, model_kwargs, eta, generator)
            yield out
            x = out["sample"]

    def respaced(self, use_timesteps: Sequence[int]) -> GaussianDiffusion:
        """The chain that keeps only ``use_timesteps`` (improved-diffusion's ``SpacedDiffusion``): betas
        ``1 - abar[t_i] / abar[t_{i-1}]``; the model still sees the original timesteps."""
        keep = sorted({int(s) for s in use_timesteps})
        if not keep or keep[0] < 0 or keep[-1] >= self.num_timesteps:
            raise ConfigError(f"use_timesteps must lie in 0..{self.num_timesteps - 1}")
        betas, last = [], 1.0
        for s in keep:
            betas.append(1 - self.alphas_cumprod[s] / last)
            last = self.alphas_cumprod[s]
        spaced = GaussianDiffusion(
            betas, self.model_mean_type, self.model_var_type, self.loss_type, self.rescale_timesteps,
            timestep_map=self.timestep_map[keep],
        )
        spaced.original_num_steps = self.original_num_steps
        return spaced

    # ---- losses and the variational bound ---------------------------------------------------------------

    def vb_terms_bpd(
        self,
        model: Model,
        x_start: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        model_output: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """One term of the bound in bits per dimension, ``(batch,)``: the decoder NLL at t = 0, else
        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)). Also ``"pred_xstart"``."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start.double(), x_t.double(), t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised, None, model_kwargs, model_output)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start.double(), out["mean"], 0.5 * out["log_variance"])
        nll = mean_flat(nll) / math.log(2.0)
        return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(
        self,
        model: Model,
        x_start: torch.Tensor,
        t: torch.Tensor,
        model_kwargs: dict | None = None,
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-example losses ``(batch,)``: ``"loss"`` and, by type, ``"mse"`` and ``"vb"`` (float64)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms: dict[str, torch.Tensor] = {}
        if self.loss_type in ("kl", "rescaled_kl"):
            terms["loss"] = self.vb_terms_bpd(model, x_start, x_t, t, False, model_kwargs)["output"]
            if self.loss_type == "rescaled_kl":
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms
        output = self.run_model(model, x_t, t, model_kwargs)
        if self.model_var_type in ("learned", "learned_range"):
            channels = x_t.shape[1]
            mean_out, var_out = torch.split(output, channels, dim=1)
            # the bound trains the variance only: the mean is learnt by the mse term
            frozen = torch.cat([mean_out.detach(), var_out], dim=1)
            terms["vb"] = self.vb_terms_bpd(model, x_start, x_t, t, False, model_output=frozen)["output"]
            if self.loss_type == "rescaled_mse":
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)  # the reference's 1/1000
            output = mean_out
        target = {
            "previous_x": lambda: self.q_posterior_mean_variance(x_start.double(), x_t, t)[0],
            "x_start": lambda: x_start.double(),
            "epsilon": lambda: noise.double(),
            "v": lambda: self.get_v(x_start.double(), noise.double(), t),
        }[self.model_mean_type]()
        if output.shape != target.shape:
            raise ShapeError(f"model output {tuple(output.shape)} != target {tuple(target.shape)}", source="model")
        terms["mse"] = mean_flat((target - output) ** 2)
        terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        return terms

    def prior_bpd(self, x_start: torch.Tensor) -> torch.Tensor:
        """KL(q(x_{T-1} | x_0) || N(0, I)) in bits per dimension, ``(batch,)``; no parameter affects it."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, dtype=torch.int64, device=x_start.device)
        mean, _, log_var = self.q_mean_variance(x_start.double(), t)
        return mean_flat(normal_kl(mean, log_var, 0.0, 0.0)) / math.log(2.0)

    def calc_bpd_loop(
        self,
        model: Model,
        x_start: torch.Tensor,
        clip_denoised: bool = True,
        model_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The whole bound: ``total_bpd`` and ``prior_bpd`` ``(batch,)``, ``vb``, ``xstart_mse``, ``mse``
        ``(batch, T)`` (column ``t`` holds timestep ``t``)."""
        vb, xstart_mse, mse = [], [], []
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x_start.shape[0],), i, dtype=torch.int64, device=x_start.device)
            noise = torch.randn(x_start.shape, generator=generator, dtype=torch.float64, device=x_start.device)
            x_t = self.q_sample(x_start.double(), t, noise)
            with torch.no_grad():
                out = self.vb_terms_bpd(model, x_start, x_t, t, clip_denoised, model_kwargs)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start.double()) ** 2))
            mse.append(mean_flat((self.predict_eps_from_xstart(x_t, t, out["pred_xstart"]) - noise) ** 2))
        # collected from T-1 down to 0; flip so that column t is timestep t
        vb_t, xm_t, mse_t = (torch.stack(v[::-1], dim=1) for v in (vb, xstart_mse, mse))
        prior = self.prior_bpd(x_start)
        return {"total_bpd": vb_t.sum(dim=1) + prior, "prior_bpd": prior, "vb": vb_t, "xstart_mse": xm_t,
                "mse": mse_t}
