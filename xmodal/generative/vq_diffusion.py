"""VQ-Diffusion's mask-and-replace discrete diffusion (Gu et al., ``microsoft/VQ-Diffusion``
``diffusion_transformer.py``) and CDCD's contrastive diffusion loss (Zhu et al., ``L-YeZhu/CDCD``).

States: ``num_tokens`` codebook tokens ``0 .. N-1`` and the mask token ``N``. One step keeps a token with
``a_t + b_t``, replaces it by each other token with ``b_t`` and masks it with ``c_t``; the mask is absorbing. The
schedule is the reference's ``alpha_schedule``: the cumulative keep probability goes linearly from ``att_1`` to
``att_T`` and the cumulative mask probability from ``ctt_1`` to ``ctt_T``. Everything is float64 probabilities
in closed form (a (T, N+1, N+1) matrix would not fit for a real codebook); logs are clamped at -70 as the
reference clamps them. Class axes are last: tokens ``(batch, ...)`` int64, probabilities ``(batch, ..., N+1)``.
The model is ``model(x_t, t) -> logits (batch, ..., N)`` of x_0 over the real tokens (never the mask).
Losses are in nats summed over positions, per example, as the reference computes them before it divides by
``batch * length``; ``t`` is drawn uniformly (``pt = 1 / T``; the reference's importance sampling is not kept).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from xmodal.errors import ConfigError, ShapeError

LOG_MIN = -70.0


def alpha_schedule(num_timesteps: int, num_tokens: int, att_1: float = 0.99999, att_T: float = 0.000009,
                   ctt_1: float = 0.000009, ctt_T: float = 0.99999):
    """The reference's schedule: per-step ``(at, bt, ct)`` and cumulative ``(att, btt, ctt)``, each of length T.

    ``at`` = keep, ``bt`` = move to one given other token, ``ct`` = mask; cumulative values likewise.
    """
    steps = np.arange(num_timesteps) / (num_timesteps - 1)
    att = np.concatenate(([1.0], steps * (att_T - att_1) + att_1))
    at = att[1:] / att[:-1]
    ctt = np.concatenate(([0.0], steps * (ctt_T - ctt_1) + ctt_1))
    ct = 1 - (1 - ctt[1:]) / (1 - ctt[:-1])
    bt = (1 - at - ct) / num_tokens
    att, ctt = att[1:], ctt[1:]
    return at, bt, ct, att, (1 - att - ctt) / num_tokens, ctt


def _log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp(min=1e-300)).clamp(min=LOG_MIN)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)


class VQDiffusion:
    """Mask-and-replace diffusion with VQ-Diffusion's losses: the VLB (mask/unmasked positions weighted by
    ``mask_weight``) plus ``auxiliary_loss_weight`` times KL(x_0 || p(x_0 | x_t)), scaled by ``2 - t / T`` when
    ``adaptive_auxiliary_loss`` (the reference's ``(1 - t / T) + 1``)."""

    def __init__(self, num_tokens: int, num_timesteps: int = 100, auxiliary_loss_weight: float = 5e-4,
                 adaptive_auxiliary_loss: bool = True, mask_weight: tuple[float, float] = (1.0, 1.0)) -> None:
        if num_tokens < 1 or num_timesteps < 2:
            raise ConfigError(f"num_tokens={num_tokens} must be >= 1 and num_timesteps={num_timesteps} >= 2")
        self.num_tokens = num_tokens
        self.num_classes = num_tokens + 1
        self.mask_index = num_tokens
        self.num_timesteps = num_timesteps
        self.auxiliary_loss_weight = auxiliary_loss_weight
        self.adaptive_auxiliary_loss = adaptive_auxiliary_loss
        self.mask_weight = mask_weight
        at, bt, ct, att, btt, ctt = alpha_schedule(num_timesteps, num_tokens)
        # index T (read by t - 1 = -1) is the identity: nothing has happened before the first step
        self.at, self.bt, self.ct = (torch.from_numpy(v) for v in (at, bt, ct))
        self.att, self.btt, self.ctt = (
            torch.from_numpy(np.append(v, last)) for v, last in ((att, 1.0), (btt, 0.0), (ctt, 0.0))
        )

    def _coef(self, arr: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return arr.to(t.device)[t].reshape(-1, *([1] * ndim))

    def q_onestep_mat(self, t: int) -> torch.Tensor:
        """Q_t as a dense ``(N+1, N+1)`` matrix, ``[i, j] = q(x_t = j | x_{t-1} = i)`` (for small N and tests)."""
        n = self.num_tokens
        mat = torch.full((n + 1, n + 1), float(self.bt[t]), dtype=torch.float64)
        mat[:n, :n] += torch.eye(n, dtype=torch.float64) * float(self.at[t])
        mat[:n, n] = float(self.ct[t])
        mat[n] = 0.0
        mat[n, n] = 1.0
        return mat

    def q_probs_from(self, probs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``probs @ q_mats[t]`` for a distribution over x_0 ``(batch, ..., N+1)``; ``t = -1`` is the identity."""
        ndim = probs.ndim - 1
        att, btt, ctt = (self._coef(a, t, ndim) for a in (self.att, self.btt, self.ctt))
        real = probs[..., : self.num_tokens]
        real_mass = real.sum(-1, keepdim=True)
        out_real = att * real + btt * real_mass
        out_mask = ctt * real_mass + probs[..., self.num_tokens :]
        return torch.cat([out_real, out_mask], dim=-1)

    def q_probs(self, x_start: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x_0): ``(batch, ..., N+1)``."""
        return self.q_probs_from(F.one_hot(x_start, self.num_classes).double(), t)

    def q_sample(
        self, x_start: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        probs = self.q_probs(x_start, t)
        flat = torch.multinomial(probs.reshape(-1, self.num_classes), 1, generator=generator)
        return flat.reshape(x_start.shape)

    def _column(self, x_t: torch.Tensor, t: torch.Tensor, cumulative: bool) -> torch.Tensor:
        """``q(x_t | x_prev = k)`` for every k (one step) or ``q(x_t | x_0 = k)`` (cumulative): ``(..., N+1)``."""
        a, b, c = (self.att, self.btt, self.ctt) if cumulative else (self.at, self.bt, self.ct)
        ndim = x_t.ndim
        a, b, c = (self._coef(v, t, ndim) for v in (a, b, c))
        onehot = F.one_hot(x_t.clamp(max=self.num_tokens - 1), self.num_tokens).double()
        masked = (x_t == self.mask_index).unsqueeze(-1)
        real_col = torch.cat([a * onehot + b, torch.zeros_like(a).expand(*x_t.shape, 1)], -1)
        mask_col = torch.cat([c.expand(*x_t.shape, self.num_tokens), torch.ones_like(c).expand(*x_t.shape, 1)], -1)
        return torch.where(masked, mask_col, real_col)

    def posterior_probs(self, x0_probs: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``sum_x0 p(x0) q(x_{t-1} | x_t, x0)``, ``(batch, ..., N+1)``. ``x0_probs`` is over the N real tokens
        (or N+1 with a zero mask entry). With a one-hot x_0 this is the true posterior; with the model's
        p(x_0 | x_t) it is p(x_{t-1} | x_t), as the reference's ``q_posterior``. ``t = 0`` gives x_0 itself."""
        if x0_probs.shape[-1] == self.num_tokens:
            x0_probs = torch.cat([x0_probs, torch.zeros_like(x0_probs[..., :1])], -1)
        x0_probs = x0_probs.double()
        # each x0 weighted by 1 / q(x_t | x0): Bayes' rule per x0 before mixing
        weights = x0_probs / self._column(x_t, t, cumulative=True).clamp(min=1e-300)
        weights = weights * (x0_probs > 0)
        mixed = self.q_probs_from(weights, t - 1)
        return mixed * self._column(x_t, t, cumulative=False)

    def p_x0_logprobs(self, model: Callable, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p(x_0 | x_t) over the real tokens, ``(batch, ..., N)``."""
        out = model(x_t, t)
        if out.shape != (*x_t.shape, self.num_tokens):
            raise ShapeError(f"model output {tuple(out.shape)} must be {(*x_t.shape, self.num_tokens)}",
                             source="model")
        return F.log_softmax(out.double(), -1).clamp(min=LOG_MIN)

    def training_losses(self, model: Callable, x_start: torch.Tensor, t: torch.Tensor | None = None,
                        x_t: torch.Tensor | None = None, generator: torch.Generator | None = None):
        """``{"loss", "vb", "aux", "log_model_prob", "log_x0_recon", "x_t", "t"}``; the last four feed CDCD."""
        if int(x_start.max()) >= self.num_tokens or int(x_start.min()) < 0:
            raise ShapeError(f"x_start must hold tokens 0..{self.num_tokens - 1}", source="x_start")
        if t is None:
            t = torch.randint(0, self.num_timesteps, (x_start.shape[0],), generator=generator,
                              device=x_start.device)
        if x_t is None:
            x_t = self.q_sample(x_start, t, generator)
        pt = 1.0 / self.num_timesteps
        log_x0_recon = self.p_x0_logprobs(model, x_t, t)
        log_model = _log(self.posterior_probs(log_x0_recon.exp(), x_t, t))
        log_true = _log(self.posterior_probs(F.one_hot(x_start, self.num_tokens).double(), x_t, t))
        weight = self.position_weight(x_t)
        at_zero = t == 0
        kl = (_kl(log_true, log_model) * weight).reshape(x_t.shape[0], -1).sum(1)
        decoder_nll = -log_model.gather(-1, x_start.unsqueeze(-1)).squeeze(-1).reshape(x_t.shape[0], -1).sum(1)
        vb = torch.where(at_zero, decoder_nll, kl)
        loss = vb / pt
        aux = torch.zeros_like(vb)
        if self.auxiliary_loss_weight:
            # KL(one_hot(x_0) || p(x_0 | x_t)) over the real tokens is -log p(x_0 | x_t)
            kl_aux = -(log_x0_recon.gather(-1, x_start.unsqueeze(-1)).squeeze(-1) * weight)
            aux = torch.where(at_zero, decoder_nll, kl_aux.reshape(x_t.shape[0], -1).sum(1))
            loss = loss + self.adaptive_weight(t, decreasing=True) * self.auxiliary_loss_weight * aux / pt
        return {"loss": loss, "vb": vb, "aux": aux, "log_model_prob": log_model, "log_x0_recon": log_x0_recon,
                "x_t": x_t, "t": t}

    def position_weight(self, x_t: torch.Tensor) -> torch.Tensor:
        masked = (x_t == self.mask_index).double()
        return masked * self.mask_weight[0] + (1 - masked) * self.mask_weight[1]

    def adaptive_weight(self, t: torch.Tensor, decreasing: bool) -> torch.Tensor | float:
        """The reference's adaptive weights: ``2 - t/T`` for the auxiliary loss, ``1 + t/T`` for CDCD's."""
        if not self.adaptive_auxiliary_loss:
            return 1.0
        frac = t.double() / self.num_timesteps
        return (1 - frac) + 1.0 if decreasing else frac + 1.0

    @torch.no_grad()
    def p_sample_loop(
        self, model: Callable, shape: Sequence[int], generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Ancestral sampling from the all-mask sequence."""
        x = torch.full(tuple(shape), self.mask_index, dtype=torch.int64, device=device)
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, dtype=torch.int64, device=x.device)
            probs = self.posterior_probs(self.p_x0_logprobs(model, x, t).exp(), x, t)
            flat = torch.multinomial(probs.reshape(-1, self.num_classes).clamp(min=0), 1, generator=generator)
            x = flat.reshape(x.shape)
        return x


# ---- CDCD: contrastive diffusion ---------------------------------------------------------------------------

NegativeMode = Literal["step", "sample"]


def chunk_shuffle(x: torch.Tensor, num_chunks: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """CDCD's intra-sample negative: the sequence ``(batch, length)`` cut into ``num_chunks`` equal chunks put in
    a random order (one order for the batch, as the reference's ``neg_sampling(mode="random")``); a tail that
    does not fill a chunk stays in place."""
    if x.ndim != 2:
        raise ShapeError(f"chunk_shuffle takes (batch, length) tokens, got {tuple(x.shape)}", source="x")
    size = x.shape[1] // num_chunks
    if size == 0:
        raise ShapeError(f"length {x.shape[1]} is shorter than {num_chunks} chunks", source="x")
    order = torch.randperm(num_chunks, generator=generator).tolist()
    out = x.clone()
    for i, src in enumerate(order):
        out[:, i * size : (i + 1) * size] = x[:, src * size : (src + 1) * size]
    return out


def inter_negatives_from_batch(x: torch.Tensor, cond: torch.Tensor, num_negatives: int,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Inter-sample negatives: for each example, ``num_negatives`` other examples of the batch whose condition
    differs (CDCD draws them from other classes or captions of the dataset). ``(batch, num_negatives, ...)``."""
    b = x.shape[0]
    flat = cond.reshape(b, -1)
    differs = (flat[:, None, :] != flat[None, :, :]).any(-1)  # (b, b)
    if not differs.any(1).all():
        raise ShapeError("every example needs another example with a different condition in the batch",
                         source="cond")
    picks = torch.multinomial(differs.double(), num_negatives, replacement=True, generator=generator)
    return x[picks]


def cdcd_negative_terms(diffusion: VQDiffusion, out: dict[str, torch.Tensor], negatives: torch.Tensor,
                        mode: NegativeMode) -> torch.Tensor:
    """The per-example negative term of CDCD, averaged over ``negatives`` ``(batch, K, ...)``: for each negative
    x^-, ``"step"``: KL(q(x_{t-1} | x_t, x^-) || p(x_{t-1} | x_t)); ``"sample"``: KL(x^- || p(x_0 | x_t));
    the decoder NLL of x^- at t = 0; weighted by ``1 + t / T`` (adaptive) and divided by ``pt = 1 / T``."""
    x_t, t = out["x_t"], out["t"]
    if negatives.shape[0] != x_t.shape[0] or negatives.shape[2:] != x_t.shape[1:]:
        raise ShapeError(f"negatives {tuple(negatives.shape)} must be (batch, K, *{tuple(x_t.shape[1:])})",
                         source="negatives")
    weight = diffusion.position_weight(x_t)
    log_model, log_x0 = out["log_model_prob"], out["log_x0_recon"]
    b = x_t.shape[0]
    total = torch.zeros(b, dtype=torch.float64, device=x_t.device)
    for k in range(negatives.shape[1]):
        neg = negatives[:, k]
        nll = -log_model.gather(-1, neg.unsqueeze(-1)).squeeze(-1).reshape(b, -1).sum(1)
        if mode == "step":
            log_neg = _log(diffusion.posterior_probs(F.one_hot(neg, diffusion.num_tokens).double(), x_t, t))
            term = _kl(log_neg, log_model) * weight
        else:
            term = -log_x0.gather(-1, neg.unsqueeze(-1)).squeeze(-1) * weight
        term = torch.where(t == 0, nll, term.reshape(b, -1).sum(1))
        total = total + diffusion.adaptive_weight(t, decreasing=False) * term * diffusion.num_timesteps
    return total / negatives.shape[1]


def cdcd_loss(diffusion: VQDiffusion, model: Callable, x_start: torch.Tensor,
              intra_negatives: torch.Tensor | None = None, inter_negatives: torch.Tensor | None = None,
              intra_weight: float = 5e-5, inter_weight: float = 5e-5, intra_mode: NegativeMode = "step",
              inter_mode: NegativeMode = "sample", t: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """CDCD's objective: VQ-Diffusion's loss minus the weighted negative terms, so that the model's denoising
    distribution moves away from negatives (intra: chunk-shuffled copies of the same sample; inter: samples of
    other conditions). Returns ``{"loss", "vb", "aux", "intra", "inter"}`` per example."""
    out = diffusion.training_losses(model, x_start, t=t, generator=generator)
    loss = out["loss"]
    zero = torch.zeros_like(loss)
    intra = inter = zero
    if intra_negatives is not None and intra_weight:
        intra = cdcd_negative_terms(diffusion, out, intra_negatives, intra_mode)
        loss = loss - intra_weight * intra
    if inter_negatives is not None and inter_weight:
        inter = cdcd_negative_terms(diffusion, out, inter_negatives, inter_mode)
        loss = loss - inter_weight * inter
    return {"loss": loss, "vb": out["vb"], "aux": out["aux"], "intra": intra, "inter": inter}
