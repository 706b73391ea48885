"""Sampling an xmodal denoiser with any diffusers scheduler (DDIM, DPM-Solver, Euler, PNDM, ...).

diffusers is the field's standard set of samplers; xmodal does not rewrite them. A model trained with
:class:`~xmodal.generative.diffusion.GaussianDiffusion` has the same betas and timestep convention as a diffusers
scheduler built with :func:`scheduler_from_diffusion` (``trained_betas`` = our betas, timesteps 0..T-1), so any
scheduler class drives it. The prediction type is translated: ``epsilon -> "epsilon"``, ``x_start ->
"sample"``, ``v -> "v_prediction"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from xmodal.errors import ConfigError, require_module
from xmodal.generative.diffusion import GaussianDiffusion, _model_dtype

PREDICTION_TYPES = {"epsilon": "epsilon", "x_start": "sample", "v": "v_prediction"}


def scheduler_from_diffusion(diffusion: GaussianDiffusion, scheduler_class: str | type = "DDIMScheduler",
                             **overrides: Any):
    """A diffusers scheduler with ``diffusion``'s betas and prediction type; ``overrides`` go to its config
    (e.g. ``clip_sample=False``). ``scheduler_class`` is a class or its name in ``diffusers``."""
    diffusers = require_module("diffusers", extra="generative")
    if diffusion.model_var_type in ("learned", "learned_range"):
        raise ConfigError("diffusers schedulers take a fixed variance; sample a learned-variance model with "
                          "GaussianDiffusion.p_sample_loop")
    if diffusion.model_mean_type not in PREDICTION_TYPES:
        raise ConfigError(f"model_mean_type {diffusion.model_mean_type!r} has no diffusers prediction type")
    cls = getattr(diffusers, scheduler_class) if isinstance(scheduler_class, str) else scheduler_class
    config = {
        "num_train_timesteps": diffusion.num_timesteps,
        "trained_betas": diffusion.betas.tolist(),
        "prediction_type": PREDICTION_TYPES[diffusion.model_mean_type],
    }
    config.update(overrides)
    return cls(**config)


@torch.no_grad()
def sample_with_scheduler(
    model: Callable[..., torch.Tensor],
    scheduler: Any,
    shape: Sequence[int],
    num_inference_steps: int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
    step_kwargs: dict | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` (any diffusers scheduler) over ``num_inference_steps`` with ``model(x, t, **kw)``.

    The initial noise is ``noise`` or a draw from ``generator``, scaled by ``init_noise_sigma``; ``generator``
    also feeds stochastic schedulers. The model gets ``t`` as an int64 ``(batch,)`` tensor of the training
    timesteps, exactly as in training.
    """
    scheduler.set_timesteps(num_inference_steps)
    dtype = _model_dtype(model, torch.float32)
    x = noise if noise is not None else torch.randn(tuple(shape), generator=generator, dtype=dtype)
    x = x.to(dtype) * scheduler.init_noise_sigma
    for step in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, step)
        t = torch.full((x.shape[0],), int(step), dtype=torch.int64, device=x.device)
        out = model(model_in, t, **(model_kwargs or {}))
        kwargs = dict(step_kwargs or {})
        if generator is not None and "generator" in _step_parameters(scheduler):
            kwargs["generator"] = generator
        x = scheduler.step(out, step, x, **kwargs).prev_sample
    return x


def _step_parameters(scheduler: Any) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)
