"""Gaussian diffusion against improved-diffusion's formulas (``gaussian_diffusion.py``, ``losses.py``), written
out here again in plain numpy/math from the reference's text, and DDIM against diffusers' DDIMScheduler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.diffusion import (
    GaussianDiffusion,
    discretized_gaussian_log_likelihood,
    get_named_beta_schedule,
    normal_kl,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_linear_schedule_matches_reference_formula():
    betas = get_named_beta_schedule("linear", 4)
    scale = 1000 / 4
    assert betas.dtype == np.float64
    np.testing.assert_array_equal(betas, [scale * 1e-4 + i * (scale * 0.02 - scale * 1e-4) / 3 for i in range(4)])
    # unvalidated as the reference: T = 10 gives a last beta of 2.0
    assert get_named_beta_schedule("linear", 10)[-1] == pytest.approx(2.0)


def test_cosine_schedule_hand_values():
    def abar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = get_named_beta_schedule("cosine", 3)
    expected = [min(1 - abar((i + 1) / 3) / abar(i / 3), 0.999) for i in range(3)]
    np.testing.assert_allclose(betas, expected, rtol=0, atol=1e-15)
    assert betas[-1] == 0.999  # abar(1) ~ 0 -> capped
    with pytest.raises(ConfigError):
        get_named_beta_schedule("quadratic", 3)


def test_arrays_on_tiny_chain_by_hand():
    betas = np.array([0.1, 0.2, 0.3])
    d = GaussianDiffusion(betas)
    abar = np.array([0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.7])
    np.testing.assert_allclose(d.alphas_cumprod, abar, atol=1e-15)
    np.testing.assert_allclose(d.alphas_cumprod_prev, [1.0, 0.9, 0.72], atol=1e-15)
    pv = betas * (1 - np.array([1.0, 0.9, 0.72])) / (1 - abar)
    assert pv[0] == 0.0
    np.testing.assert_allclose(d.posterior_variance, pv, atol=1e-15)
    np.testing.assert_allclose(d.posterior_log_variance_clipped, np.log([pv[1], pv[1], pv[2]]), atol=1e-14)
    np.testing.assert_allclose(d.posterior_mean_coef1, betas * np.sqrt([1.0, 0.9, 0.72]) / (1 - abar), atol=1e-15)
    np.testing.assert_allclose(
        d.posterior_mean_coef2, (1 - np.array([1.0, 0.9, 0.72])) * np.sqrt(1 - betas) / (1 - abar), atol=1e-15
    )
    for arr in (d.alphas_cumprod, d.posterior_variance, d.posterior_log_variance_clipped):
        assert arr.dtype == np.float64


def test_q_sample_and_posterior_are_float64_and_match_numpy():
    betas = get_named_beta_schedule("cosine", 50)
    d = GaussianDiffusion(betas)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 2, 4, 4, generator=gen) * 2 - 1  # float32 data
    noise = torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.tensor([0, 17, 49])
    x_t = d.q_sample(x0, t, noise)
    assert x_t.dtype == torch.float64
    abar = np.cumprod(1 - betas)
    x0n, nn_ = x0.double().numpy(), noise.double().numpy()
    tt = t.numpy()[:, None, None, None]
    ref_xt = np.sqrt(abar[tt]) * x0n + np.sqrt(1 - abar[tt]) * nn_
    np.testing.assert_allclose(x_t.numpy(), ref_xt, rtol=0, atol=1e-15)

    mean, var, log_var = d.q_posterior_mean_variance(x0, x_t, t)
    assert mean.dtype == var.dtype == log_var.dtype == torch.float64
    assert mean.shape == var.shape == log_var.shape == x_t.shape
    abar_prev = np.append(1.0, abar[:-1])
    coef1 = betas * np.sqrt(abar_prev) / (1 - abar)
    coef2 = (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar)
    pv = betas * (1 - abar_prev) / (1 - abar)
    np.testing.assert_allclose(mean.numpy(), coef1[tt] * x0n + coef2[tt] * ref_xt, rtol=0, atol=1e-14)
    np.testing.assert_allclose(var.numpy(), np.broadcast_to(pv[tt], x_t.shape), rtol=0, atol=1e-15)
    np.testing.assert_allclose(log_var.numpy(), np.broadcast_to(np.log(np.append(pv[1], pv[1:]))[tt], x_t.shape),
                               rtol=0, atol=1e-13)
    with pytest.raises(ShapeError):
        d.q_sample(x0, torch.tensor([0, 1]), noise)
    with pytest.raises(ShapeError):
        d.q_sample(x0, torch.tensor([0, 1, 50]), noise)


def _np_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def test_normal_kl_and_discretized_likelihood_hand_values():
    m1, lv1 = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([0.2, -0.5], dtype=torch.float64)
    kl = normal_kl(m1, lv1, 0.0, 0.0)
    # KL(N(m, s2) || N(0, 1)) = 0.5 (s2 + m^2 - 1 - log s2)
    s2 = np.exp([0.2, -0.5])
    np.testing.assert_allclose(kl.numpy(), 0.5 * (s2 + np.array([0.09, 1.0]) - 1 - np.array([0.2, -0.5])),
                               atol=1e-15)
    assert float(normal_kl(torch.tensor(1.0), 0.0, torch.tensor(1.0), 0.0)) == 0.0

    x = torch.tensor([-1.0, -0.5, 0.0, 1.0], dtype=torch.float64)
    means = torch.tensor([-0.9, -0.4, 0.1, 0.95], dtype=torch.float64)
    log_scales = torch.tensor([-2.0, -1.0, -3.0, -2.5], dtype=torch.float64)
    got = discretized_gaussian_log_likelihood(x, means, log_scales).numpy()
    xs, ms, ls = x.numpy(), means.numpy(), log_scales.numpy()
    inv = np.exp(-ls)
    plus, minus = _np_cdf(inv * (xs - ms + 1 / 255)), _np_cdf(inv * (xs - ms - 1 / 255))
    expected = [
        np.log(max(plus[0], 1e-12)),  # x < -0.999: the whole left tail
        np.log(max(plus[1] - minus[1], 1e-12)),
        np.log(max(plus[2] - minus[2], 1e-12)),
        np.log(max(1 - minus[3], 1e-12)),  # x > 0.999: the right tail
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # a bin far from the mean hits the 1e-12 clamp
    far = discretized_gaussian_log_likelihood(torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64) * 0.9,
                                              torch.full((1,), -6.0, dtype=torch.float64))
    assert float(far) == pytest.approx(math.log(1e-12))


def _np_vb_term(betas, x0, xt, t, eps_pred):
    """improved-diffusion's _vb_terms_bpd for an epsilon model, fixed_small variance, clip_denoised=False."""
    abar = np.cumprod(1 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    pv = betas * (1 - abar_prev) / (1 - abar)
    plv = np.log(np.append(pv[1], pv[1:]))
    c1, c2 = betas * np.sqrt(abar_prev) / (1 - abar), (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar)
    true_mean = c1[t] * x0 + c2[t] * xt
    x0_pred = np.sqrt(1 / abar[t]) * xt - np.sqrt(1 / abar[t] - 1) * eps_pred
    model_mean = c1[t] * x0_pred + c2[t] * xt
    lv = plv[t]
    kl = 0.5 * (-1 + lv - lv + np.exp(lv - lv) + (true_mean - model_mean) ** 2 * np.exp(-lv))
    if t == 0:
        inv = np.exp(-0.5 * lv)
        plus, minus = _np_cdf(inv * (x0 - model_mean + 1 / 255)), _np_cdf(inv * (x0 - model_mean - 1 / 255))
        ll = np.where(x0 < -0.999, np.log(np.maximum(plus, 1e-12)),
                      np.where(x0 > 0.999, np.log(np.maximum(1 - minus, 1e-12)),
                               np.log(np.maximum(plus - minus, 1e-12))))
        return -ll.mean() / np.log(2.0)
    return kl.mean() / np.log(2.0)


def test_vlb_terms_on_tiny_case():
    betas = np.array([0.05, 0.2, 0.5])
    d = GaussianDiffusion(betas)
    x0 = torch.tensor([[-1.0, -0.2, 0.6, 1.0]], dtype=torch.float64).repeat(3, 1)
    xt = torch.tensor([[0.3, -0.1, 0.5, 0.8]], dtype=torch.float64).repeat(3, 1)
    t = torch.tensor([0, 1, 2])

    def model(x, tt):  # a fixed epsilon prediction that depends on x only
        return 0.5 * x

    got = d.vb_terms_bpd(model, x0, xt, t, clip_denoised=False)["output"]
    expected = [_np_vb_term(betas, x0[0].numpy(), xt[0].numpy(), i, 0.5 * xt[0].numpy()) for i in range(3)]
    np.testing.assert_allclose(got.numpy()[1:], expected[1:], rtol=1e-12)
    # the decoder term differences two CDFs in the far tail: ulp-level differences between torch's and numpy's
    # tanh are amplified by the cancellation, hence the looser tolerance there
    np.testing.assert_allclose(got.numpy()[0], expected[0], rtol=1e-5)
    # the prior term: KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1)) in bits
    abar_t = np.prod(1 - betas)
    m, v = np.sqrt(abar_t) * x0[0].numpy(), 1 - abar_t
    prior = (0.5 * (v + m**2 - 1 - np.log(v))).mean() / np.log(2)
    np.testing.assert_allclose(d.prior_bpd(x0).numpy(), [prior] * 3, rtol=1e-12)
    full = d.calc_bpd_loop(model, x0, clip_denoised=False, generator=torch.Generator().manual_seed(0))
    assert full["vb"].shape == (3, 3)
    np.testing.assert_allclose(full["total_bpd"].numpy(), full["vb"].sum(1).numpy() + prior, rtol=1e-12)


class _Eps(nn.Module):
    """A tiny fixed epsilon model with a timestep dependence."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 4)
        self.emb = nn.Embedding(1000, 4)

    def forward(self, x, t):
        return torch.tanh(self.lin(x) + self.emb(t.long()))


def test_ddim_eta0_is_deterministic_and_equals_diffusers():
    diffusers = pytest.importorskip("diffusers")
    betas = get_named_beta_schedule("linear", 100)
    d = GaussianDiffusion(betas)
    model = _Eps()
    noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    ours = d.ddim_sample_loop(model, (5, 4), num_steps=10, noise=noise, clip_denoised=False)
    again = d.ddim_sample_loop(model, (5, 4), num_steps=10, noise=noise, clip_denoised=False)
    assert torch.equal(ours, again)

    sched = diffusers.DDIMScheduler(num_train_timesteps=100, trained_betas=betas.tolist(), clip_sample=False,
                                    set_alpha_to_one=True, prediction_type="epsilon")
    sched.set_timesteps(10)
    assert [int(s) for s in sched.timesteps] == d.ddim_timesteps(10)
    x = noise.clone()
    with torch.no_grad():
        for s in sched.timesteps:
            x = sched.step(model(x, torch.full((5,), int(s))), s, x, eta=0.0).prev_sample
    # diffusers keeps its coefficients in float32; ours are float64
    torch.testing.assert_close(ours.float(), x, rtol=2e-6, atol=2e-5)

    from xmodal.generative.sampling import sample_with_scheduler, scheduler_from_diffusion

    via = sample_with_scheduler(model, scheduler_from_diffusion(d, "DDIMScheduler", clip_sample=False), (5, 4),
                                10, noise=noise)
    torch.testing.assert_close(via, x, rtol=0, atol=1e-6)
    # any other scheduler drives the same model
    dpm = sample_with_scheduler(model, scheduler_from_diffusion(d, "DPMSolverMultistepScheduler"), (5, 4), 10,
                                noise=noise)
    assert dpm.shape == (5, 4) and torch.isfinite(dpm).all()


def test_ancestral_sampling_reproducible_and_parameterisations_consistent():
    betas = get_named_beta_schedule("cosine", 20)
    model = _Eps()
    d = GaussianDiffusion(betas)
    a = d.p_sample_loop(model, (3, 4), generator=torch.Generator().manual_seed(3))
    b = d.p_sample_loop(model, (3, 4), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.float64
    # x0 -> eps -> x0, and v round trips, hold to float64 precision
    x0 = torch.rand(3, 4, dtype=torch.float64) * 2 - 1
    eps = torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([0, 9, 19])
    xt = d.q_sample(x0, t, eps)
    torch.testing.assert_close(d.predict_xstart_from_eps(xt, t, eps), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(d.predict_xstart_from_v(xt, t, d.get_v(x0, eps, t)), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(d.predict_eps_from_xstart(xt, t, x0), eps, rtol=0, atol=1e-10)


def test_training_losses_simple_v_and_hybrid():
    betas = get_named_beta_schedule("linear", 1000)
    x0 = torch.rand(4, 4) * 2 - 1
    noise = torch.randn(4, 4)
    t = torch.tensor([0, 10, 500, 999])
    zero = lambda x, tt: torch.zeros_like(x)
    mse = GaussianDiffusion(betas).training_losses(zero, x0, t, noise=noise)
    torch.testing.assert_close(mse["loss"], (noise.double() ** 2).mean(1), rtol=0, atol=1e-12)
    v = GaussianDiffusion(betas, model_mean_type="v").training_losses(zero, x0, t, noise=noise)
    abar = np.cumprod(1 - betas)[t.numpy()][:, None]
    v_ref = np.sqrt(abar) * noise.double().numpy() - np.sqrt(1 - abar) * x0.double().numpy()
    np.testing.assert_allclose(v["loss"].numpy(), (v_ref**2).mean(1), atol=1e-12)

    # hybrid: mse on the mean channels + vb (scaled by T/1000) through the variance channels only
    lin = nn.Linear(4, 8).double()
    hybrid = GaussianDiffusion(betas, model_var_type="learned_range", loss_type="rescaled_mse")
    out = hybrid.training_losses(lambda x, tt: lin(x), x0.double(), t, noise=noise.double())
    assert set(out) == {"loss", "mse", "vb"}
    torch.testing.assert_close(out["loss"], out["mse"] + out["vb"])
    out["vb"].sum().backward()
    # the vb term reaches the variance outputs only: weights of the mean rows get no gradient
    assert lin.weight.grad[:4].abs().max() == 0 and lin.weight.grad[4:].abs().max() > 0


def test_respaced_chain_keeps_alphas_cumprod():
    d = GaussianDiffusion(get_named_beta_schedule("linear", 100))
    keep = [0, 24, 49, 74, 99]
    sp = d.respaced(keep)
    np.testing.assert_allclose(sp.alphas_cumprod, d.alphas_cumprod[keep], rtol=1e-13)
    assert sp.model_timesteps(torch.tensor([0, 4])).tolist() == [0, 99]


class _CondModel(nn.Module):
    def __init__(self, labels: bool) -> None:
        super().__init__()
        self.emb = nn.Embedding(4, 4) if labels else None

    def forward(self, x, t, cond):
        c = self.emb(cond) if self.emb is not None else cond
        return torch.cat([x * 0 + c, -c], dim=1)  # 4 mean channels, 4 variance channels


def test_classifier_free_guidance_adapter():
    from xmodal.generative.guidance import ClassifierFreeGuidance

    torch.manual_seed(0)
    cfg = ClassifierFreeGuidance(_CondModel(labels=False), cond_shape=(4,), p_uncond=0.5, guided_channels=4)
    with torch.no_grad():
        cfg.null_cond.fill_(0.25)
    x, t = torch.zeros(3, 4), torch.zeros(3, dtype=torch.int64)
    cond = torch.randn(3, 4)
    out = cfg.guided(3.0)(x, t, cond=cond)
    # uncond + s (cond - uncond) on the guided channels, the conditional output elsewhere
    torch.testing.assert_close(out[:, :4], 0.25 + 3.0 * (cond - 0.25))
    torch.testing.assert_close(out[:, 4:], -cond)
    torch.testing.assert_close(cfg.guided(1.0)(x, t, cond=cond), cfg.model(x, t, cond=cond))
    # dropout replaces whole examples with the learnable null, at about p_uncond
    dropped = cfg.drop(torch.ones(2000, 4), generator=torch.Generator().manual_seed(0))
    frac = (dropped == 0.25).all(1).float().mean().item()
    assert abs(frac - 0.5) < 0.05 and ((dropped == 1) | (dropped == 0.25)).all()
    cfg.train()
    out = cfg(x, t, cond)
    out.sum().backward()  # the null embedding learns
    assert cfg.null_cond.grad is not None
    labels = ClassifierFreeGuidance(_CondModel(labels=True), num_classes=3, p_uncond=1.0)
    assert torch.equal(labels.drop(torch.tensor([0, 1, 2])), torch.tensor([3, 3, 3]))
    with pytest.raises(ConfigError):
        ClassifierFreeGuidance(_CondModel(labels=True))
    # the guided model drives the samplers
    d = GaussianDiffusion(get_named_beta_schedule("cosine", 10), model_var_type="learned_range")
    cond = cond.clamp(-1, 1)  # the variance channels are read as a fraction in [-1, 1]
    sample = d.p_sample_loop(cfg.eval().guided(2.0), (3, 4), model_kwargs={"cond": cond},
                             generator=torch.Generator().manual_seed(0))
    assert sample.shape == (3, 4)


@pytest.mark.parametrize("mean_type", ["epsilon", "x_start", "v"])
def test_ddim_equals_diffusers_for_every_prediction_type(mean_type):
    pytest.importorskip("diffusers")
    from xmodal.generative.sampling import sample_with_scheduler, scheduler_from_diffusion

    d = GaussianDiffusion(get_named_beta_schedule("cosine", 50), model_mean_type=mean_type)
    model = _Eps()
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    ours = d.ddim_sample_loop(model, (3, 4), num_steps=5, noise=noise, clip_denoised=False)
    theirs = sample_with_scheduler(model, scheduler_from_diffusion(d, clip_sample=False), (3, 4), 5, noise=noise)
    torch.testing.assert_close(ours.float(), theirs, rtol=1e-5, atol=1e-5)
