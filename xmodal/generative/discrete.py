"""Discrete (categorical) diffusion: D3PM (Austin et al.) as its reference code defines it
(``d3pm/images/diffusion_categorical.py``), in float64 torch.

Time convention (the reference's): noisy data are x_0 .. x_{T-1}, the clean data is ``x_start``; ``t`` is an
int64 tensor of shape ``(batch,)`` in ``0 .. T-1``. ``q_onestep_mats[t][i, j] = q(x_t = j | x_{t-1} = i)`` and
``q_mats[t] = q_onestep_mats[0] @ ... @ q_onestep_mats[t]`` (so ``q_mats[t][i, j] = q(x_t = j | x_start = i)``).
Class axes are last: tokens ``(batch, ...)`` int64, logits ``(batch, ..., K)`` float64. The model is
``model(x_t, t) -> logits of x_start`` (the reference's ``model_prediction="x_start"``, ``model_output="logits"``).

Transitions: ``"uniform"`` (off-diagonal ``beta / K``, diagonal ``1 - beta (K - 1) / K``) and ``"absorbing"``
(``(1 - beta) I`` plus ``beta`` on the whole column of the mask state). The mask state is the last class,
K - 1, as D3PM's text models place it (its image model puts it at K // 2). Losses are in bits per dimension,
``loss_type`` ``"kl"``, ``"cross_entropy_x_start"`` or ``"hybrid"`` (``vb + hybrid_coeff * ce``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F

from xmodal.errors import ConfigError, ShapeError

Transition = Literal["uniform", "absorbing"]
LossType = Literal["kl", "cross_entropy_x_start", "hybrid"]
EPS = 1.0e-6  # the reference's eps inside every log


def jsd_betas(num_timesteps: int) -> np.ndarray:
    """Sohl-Dickstein's ``1 / T, 1 / (T - 1), ..., 1`` (D3PM's schedule for absorbing diffusion)."""
    return 1.0 / np.linspace(num_timesteps, 1.0, num_timesteps)


def cosine_betas(num_timesteps: int) -> np.ndarray:
    """Hoogeboom et al.'s cosine schedule as D3PM computes it (for uniform diffusion)."""
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    alpha_bar = np.cos((steps + 0.008) / 1.008 * np.pi / 2)
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], 0.999)


def categorical_kl_logits(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits1) || softmax(logits2)) over the last axis."""
    return (F.softmax(logits1, -1) * (F.log_softmax(logits1, -1) - F.log_softmax(logits2, -1))).sum(-1)


def categorical_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)[x]``: ``x`` int ``(batch, ...)``, logits ``(batch, ..., K)``."""
    return F.log_softmax(logits, -1).gather(-1, x.unsqueeze(-1)).squeeze(-1)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


class D3PM:
    """Structured-transition categorical diffusion over ``num_classes`` states with ``betas`` (length T)."""

    def __init__(
        self,
        num_classes: int,
        betas: Sequence[float] | np.ndarray,
        transition: Transition = "uniform",
        loss_type: LossType = "hybrid",
        hybrid_coeff: float = 0.001,
    ) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ShapeError(f"betas must be a non-empty 1-D array, got shape {betas.shape}", source="betas")
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ConfigError("every beta must lie in (0, 1]")
        if num_classes < 2:
            raise ConfigError(f"num_classes={num_classes} must be at least 2")
        if transition not in ("uniform", "absorbing"):
            raise ConfigError(f"transition={transition!r}; expected 'uniform' or 'absorbing'")
        if loss_type not in get_args(LossType):
            raise ConfigError(f"loss_type={loss_type!r}; expected one of {list(get_args(LossType))}")
        self.num_classes = num_classes
        self.betas = betas
        self.num_timesteps = len(betas)
        self.transition = transition
        self.loss_type = loss_type
        self.hybrid_coeff = hybrid_coeff
        self.mask_index = num_classes - 1
        k = num_classes
        mats = []
        for beta in betas:
            if transition == "uniform":
                mat = np.full((k, k), beta / k)
                np.fill_diagonal(mat, 1.0 - beta * (k - 1) / k)
            else:
                mat = np.diag(np.full(k, 1.0 - beta))
                mat[:, self.mask_index] += beta
            mats.append(mat)
        self.q_onestep_mats = np.stack(mats)  # (T, K, K)
        cumulative = [self.q_onestep_mats[0]]
        for t in range(1, self.num_timesteps):
            cumulative.append(cumulative[-1] @ self.q_onestep_mats[t])
        self.q_mats = np.stack(cumulative)  # (T, K, K)
        self._onestep = torch.from_numpy(self.q_onestep_mats)
        self._cum = torch.from_numpy(self.q_mats)

    # ---- the forward process ----

    def _check(self, x: torch.Tensor, t: torch.Tensor, name: str = "x") -> None:
        if x.is_floating_point():
            raise ShapeError(f"{name} must hold integer class indices, got {x.dtype}", source=name)
        if t.ndim != 1 or t.shape[0] != x.shape[0] or t.is_floating_point():
            raise ShapeError(f"t must be an integer tensor of shape ({x.shape[0]},), got {tuple(t.shape)}",
                             source="t")
        if int(x.min()) < 0 or int(x.max()) >= self.num_classes:
            raise ShapeError(f"{name} values must lie in 0..{self.num_classes - 1}", source=name)

    def _rows(self, mats: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``mats[t, x, :]`` broadcast over the batch: ``(batch, ..., K)``."""
        tb = t.reshape(-1, *([1] * (x.ndim - 1))).expand_as(x)
        return mats.to(x.device)[tb, x]

    def q_probs(self, x_start: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_start): ``(batch, ..., K)``."""
        self._check(x_start, t, "x_start")
        return self._rows(self._cum, t, x_start)

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t with the Gumbel trick from uniform ``noise`` of shape ``(*x_start.shape, K)``."""
        if noise.shape != (*x_start.shape, self.num_classes):
            raise ShapeError(f"noise must have shape {(*x_start.shape, self.num_classes)}", source="noise")
        logits = torch.log(self.q_probs(x_start, t) + EPS)
        noise = noise.double().clamp(min=torch.finfo(torch.float64).tiny, max=1.0)
        return torch.argmax(logits - torch.log(-torch.log(noise)), dim=-1)

    def q_posterior_logits(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, x_start_logits: bool
    ) -> torch.Tensor:
        """Unnormalised logits of q(x_{t-1} | x_t, x_start), ``(batch, ..., K)`` float64:
        ``log(Q_t[:, x_t] + eps) + log(q_mats[t-1][x_start, :] + eps)`` (with logits, ``softmax(x_start) @
        q_mats[t-1]``); at t = 0, ``log(one_hot(x_start) + eps)`` (or the logits unchanged)."""
        self._check(x_t, t, "x_t")
        if x_start_logits:
            if x_start.shape != (*x_t.shape, self.num_classes):
                raise ShapeError(f"x_start logits {tuple(x_start.shape)} must be x_t's shape plus "
                                 f"({self.num_classes},)", source="x_start")
            x_start = x_start.double()
        elif x_start.shape != x_t.shape:
            raise ShapeError(f"x_start {tuple(x_start.shape)} != x_t {tuple(x_t.shape)}", source="x_start")
        # Q_t[:, x_t] is the row x_t of Q_t transposed
        fact1 = self._rows(self._onestep.transpose(1, 2), t, x_t)
        t_prev = (t - 1).clamp(min=0)  # t = 0 is replaced below
        if x_start_logits:
            probs = F.softmax(x_start, dim=-1)
            mats = self._cum.to(x_t.device)[t_prev]  # (batch, K, K)
            fact2 = (probs.reshape(probs.shape[0], -1, self.num_classes) @ mats).reshape(probs.shape)
            tzero = x_start
        else:
            fact2 = self._rows(self._cum, t_prev, x_start)
            tzero = torch.log(F.one_hot(x_start, self.num_classes).double() + EPS)
        out = torch.log(fact1 + EPS) + torch.log(fact2 + EPS)
        return torch.where(t.reshape(-1, *([1] * (out.ndim - 1))) == 0, tzero, out)

    # ---- the reverse process ----

    def p_logits(self, model: Callable, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(model_logits, pred_x_start_logits)`` of p(x_{t-1} | x_t), both ``(batch, ..., K)`` float64."""
        pred = model(x, t).double()
        if pred.shape != (*x.shape, self.num_classes):
            raise ShapeError(f"model output {tuple(pred.shape)} must be {(*x.shape, self.num_classes)}",
                             source="model")
        tb = t.reshape(-1, *([1] * x.ndim))
        model_logits = torch.where(tb == 0, pred, self.q_posterior_logits(pred, x, t, x_start_logits=True))
        return model_logits, pred

    def p_sample(self, model: Callable, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step x_t -> x_{t-1} from uniform ``noise`` ``(*x.shape, K)``; the argmax at t = 0."""
        logits, pred = self.p_logits(model, x, t)
        noise = noise.double().clamp(min=torch.finfo(torch.float64).tiny, max=1.0)
        nonzero = (t != 0).double().reshape(-1, *([1] * x.ndim))
        return torch.argmax(logits - nonzero * torch.log(-torch.log(noise)), dim=-1), F.softmax(pred, -1)

    @torch.no_grad()
    def p_sample_loop(self, model: Callable, shape: Sequence[int], generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        """Ancestral sampling from the stationary distribution (uniform, or all-mask for absorbing)."""
        if self.transition == "absorbing":
            x = torch.full(tuple(shape), self.mask_index, dtype=torch.int64, device=device)
        else:
            x = torch.randint(0, self.num_classes, tuple(shape), generator=generator, device=device)
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)
            noise = torch.rand((*x.shape, self.num_classes), generator=generator, dtype=torch.float64,
                               device=x.device)
            x, _ = self.p_sample(model, x, t, noise)
        return x

    # ---- losses ----

    def vb_terms_bpd(
        self, model: Callable, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(terms, pred_x_start_logits)``: the decoder NLL at t = 0, else KL(q(x_{t-1} | x_t, x_start) ||
        p(x_{t-1} | x_t)), in bits per dimension, ``(batch,)``."""
        true_logits = self.q_posterior_logits(x_start, x_t, t, x_start_logits=False)
        model_logits, pred = self.p_logits(model, x_t, t)
        kl = mean_flat(categorical_kl_logits(true_logits, model_logits)) / math.log(2.0)
        nll = mean_flat(-categorical_log_likelihood(x_start, model_logits)) / math.log(2.0)
        return torch.where(t == 0, nll, kl), pred

    def prior_bpd(self, x_start: torch.Tensor) -> torch.Tensor:
        """KL(q(x_{T-1} | x_start) || stationary distribution), bits per dimension ``(batch,)``."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, dtype=torch.int64, device=x_start.device)
        probs = self.q_probs(x_start, t)
        if self.transition == "absorbing":
            prior = F.one_hot(torch.full_like(x_start, self.mask_index), self.num_classes).double()
        else:
            prior = torch.full_like(probs, 1.0 / self.num_classes)
        kl = (probs * (torch.log(probs + 1e-6) - torch.log(prior + 1e-6))).sum(-1)  # as the reference's _probs KL
        return mean_flat(kl) / math.log(2.0)

    def cross_entropy_x_start(self, x_start: torch.Tensor, pred_x_start_logits: torch.Tensor) -> torch.Tensor:
        """-log p(x_start | x_t) in bits per dimension, ``(batch,)``."""
        return mean_flat(-categorical_log_likelihood(x_start, pred_x_start_logits)) / math.log(2.0)

    def training_losses(
        self,
        model: Callable,
        x_start: torch.Tensor,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "vb", "ce"}`` per example (terms that ``loss_type`` does not use are absent)."""
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x_start.shape[0],), generator=generator,
                              device=x_start.device)
        if noise is None:
            noise = torch.rand((*x_start.shape, self.num_classes), generator=generator, dtype=torch.float64,
                               device=x_start.device)
        x_t = self.q_sample(x_start, t, noise)
        if self.loss_type == "cross_entropy_x_start":
            _, pred = self.p_logits(model, x_t, t)
            ce = self.cross_entropy_x_start(x_start, pred)
            return {"loss": ce, "ce": ce}
        vb, pred = self.vb_terms_bpd(model, x_start, x_t, t)
        if self.loss_type == "kl":
            return {"loss": vb, "vb": vb}
        ce = self.cross_entropy_x_start(x_start, pred)
        return {"loss": vb + self.hybrid_coeff * ce, "vb": vb, "ce": ce}
