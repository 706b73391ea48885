"""D3PM against the definitions of the reference D3PM code (``d3pm/images/diffusion_categorical.py``),
re-derived here in plain numpy loops on small K and T, and by hand on K = 3."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.discrete import D3PM, cosine_betas, jsd_betas
from xmodal.generative.vq_diffusion import (
    VQDiffusion,
    alpha_schedule,
    cdcd_loss,
    chunk_shuffle,
    inter_negatives_from_batch,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def _np_onestep(kind, beta, k):
    mat = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if kind == "uniform":
                mat[i, j] = 1 - beta * (k - 1) / k if i == j else beta / k
            else:  # absorbing into the last class
                mat[i, j] = (1 - beta) * (i == j) + beta * (j == k - 1)
    return mat


def test_uniform_and_absorbing_matrices_by_hand():
    d = D3PM(3, [0.3, 0.6], "uniform")
    np.testing.assert_allclose(d.q_onestep_mats[0], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],
                               atol=1e-15)
    np.testing.assert_allclose(d.q_mats[1], d.q_onestep_mats[0] @ d.q_onestep_mats[1], atol=1e-15)
    a = D3PM(3, [0.25, 0.5], "absorbing")
    np.testing.assert_allclose(a.q_onestep_mats[0], [[0.75, 0, 0.25], [0, 0.75, 0.25], [0, 0, 1.0]], atol=1e-15)
    # after both steps a token survives with (1 - 0.25)(1 - 0.5) and is masked otherwise
    np.testing.assert_allclose(a.q_mats[1], [[0.375, 0, 0.625], [0, 0.375, 0.625], [0, 0, 1.0]], atol=1e-15)
    assert d.q_onestep_mats.shape == (2, 3, 3) and d.q_mats.dtype == np.float64
    for mats in (d.q_mats, a.q_mats):
        np.testing.assert_allclose(mats.sum(-1), 1.0, atol=1e-14)


@pytest.mark.parametrize("kind", ["uniform", "absorbing"])
def test_cumulative_products_against_numpy(kind):
    k, T = 5, 6
    betas = cosine_betas(T) if kind == "uniform" else jsd_betas(T)
    d = D3PM(k, betas, kind)
    running = np.eye(k)
    for t in range(T):
        one = _np_onestep(kind, betas[t], k)
        np.testing.assert_allclose(d.q_onestep_mats[t], one, rtol=0, atol=1e-15)
        running = running @ one
        np.testing.assert_allclose(d.q_mats[t], running, rtol=0, atol=1e-13)
    if kind == "absorbing":  # jsd ends at beta = 1: everything is masked
        np.testing.assert_allclose(d.q_mats[-1][:, -1], 1.0)


def _np_posterior(d_onestep, d_cum, x_start, x_t, t, x_start_probs=None):
    """Elementwise loops over the definition: log(Q_t[x_prev, x_t] + eps) + log(q(x_prev | x_start) + eps)."""
    eps = 1e-6
    k = d_onestep.shape[-1]
    out = np.zeros((len(x_t), k))
    for n in range(len(x_t)):
        for prev in range(k):
            if t[n] == 0:
                out[n, prev] = (np.log(x_start_probs[n, prev]) if x_start_probs is not None
                                else np.log((prev == x_start[n]) + eps))
                continue
            f1 = d_onestep[t[n]][prev, x_t[n]]
            if x_start_probs is None:
                f2 = d_cum[t[n] - 1][x_start[n], prev]
            else:
                f2 = sum(x_start_probs[n, i] * d_cum[t[n] - 1][i, prev] for i in range(k))
            out[n, prev] = np.log(f1 + eps) + np.log(f2 + eps)
    return out


@pytest.mark.parametrize("kind", ["uniform", "absorbing"])
def test_posterior_logits_against_definition(kind):
    k, T = 4, 5
    d = D3PM(k, np.linspace(0.1, 0.5, T), kind)
    gen = torch.Generator().manual_seed(0)
    x_start = torch.randint(0, k, (6,), generator=gen)
    t = torch.tensor([0, 1, 2, 3, 4, 2])
    x_t = d.q_sample(x_start, t, torch.rand(6, k, generator=gen, dtype=torch.float64))
    got = d.q_posterior_logits(x_start, x_t, t, x_start_logits=False)
    assert got.dtype == torch.float64 and got.shape == (6, k)
    ref = _np_posterior(d.q_onestep_mats, d.q_mats, x_start.numpy(), x_t.numpy(), t.numpy())
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)

    logits = torch.randn(6, k, generator=gen, dtype=torch.float64)
    got_l = d.q_posterior_logits(logits, x_t, t, x_start_logits=True)
    probs = torch.softmax(logits, -1).numpy()
    ref_l = _np_posterior(d.q_onestep_mats, d.q_mats, None, x_t.numpy(), t.numpy(), probs)
    # at t = 0 the logits come back unchanged
    ref_l[0] = logits[0].numpy()
    np.testing.assert_allclose(got_l.numpy(), ref_l, rtol=0, atol=1e-12)

    # any shape (batch, ...) works: a 2x3 grid per example
    xs, xt = x_start[:2, None, None].expand(2, 2, 3), x_t[:2, None, None].expand(2, 2, 3)
    grid = d.q_posterior_logits(xs, xt, t[:2], x_start_logits=False)
    assert grid.shape == (2, 2, 3, k)
    torch.testing.assert_close(grid[:, 1, 2], got[:2])


def test_posterior_is_bayes_rule_when_normalised():
    """softmax of the posterior logits equals q(x_t | x_prev) q(x_prev | x_start) / q(x_t | x_start) up to the
    1e-6 smoothing."""
    d = D3PM(3, [0.2, 0.4, 0.6], "uniform")
    x_start, x_t, t = torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([2, 1])
    probs = torch.softmax(d.q_posterior_logits(x_start, x_t, t, False), -1).numpy()
    for n in range(2):
        tt = int(t[n])
        num = d.q_onestep_mats[tt][:, int(x_t[n])] * d.q_mats[tt - 1][int(x_start[n])]
        np.testing.assert_allclose(probs[n], num / d.q_mats[tt][int(x_start[n]), int(x_t[n])], atol=1e-5)


def test_hybrid_loss_weights_the_cross_entropy():
    k = 4
    d = D3PM(k, np.linspace(0.05, 0.4, 5), "absorbing", loss_type="hybrid", hybrid_coeff=0.25)
    torch.manual_seed(0)
    table = torch.randn(k, k, dtype=torch.float64)

    def model(x, t):
        return table[x] + 0.1 * t.double().reshape(-1, *([1] * (x.ndim))).expand(*x.shape, k)

    x_start = torch.randint(0, k - 1, (3, 7))
    t = torch.tensor([0, 2, 4])
    noise = torch.rand(3, 7, k, dtype=torch.float64)
    out = d.training_losses(model, x_start, t, noise)
    torch.testing.assert_close(out["loss"], out["vb"] + 0.25 * out["ce"], rtol=0, atol=1e-14)
    # the cross-entropy term by hand: -mean log softmax(model(x_t))[x_start] in bits
    x_t = d.q_sample(x_start, t, noise)
    logp = torch.log_softmax(model(x_t, t), -1).gather(-1, x_start[..., None])[..., 0]
    torch.testing.assert_close(out["ce"], -logp.mean(1) / math.log(2), rtol=0, atol=1e-12)
    # at t = 0 the vb term is the decoder NLL of the model's own logits
    torch.testing.assert_close(out["vb"][0], out["ce"][0], rtol=0, atol=1e-12)
    kl_only = D3PM(k, d.betas, "absorbing", loss_type="kl").training_losses(model, x_start, t, noise)
    torch.testing.assert_close(kl_only["loss"], out["vb"])


def test_prior_and_sampling_shapes_and_errors():
    d = D3PM(4, jsd_betas(4), "absorbing")
    x = torch.randint(0, 3, (2, 5))
    assert torch.allclose(d.prior_bpd(x), torch.zeros(2, dtype=torch.float64), atol=1e-5)  # all masked at T-1
    samples = d.p_sample_loop(lambda x, t: torch.zeros(*x.shape, 4, dtype=torch.float64), (2, 5),
                              generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 5) and samples.dtype == torch.int64
    with pytest.raises(ConfigError):
        D3PM(4, [0.1], "gaussian")
    with pytest.raises(ShapeError):
        d.q_posterior_logits(x, x, torch.tensor([0]), False)
    with pytest.raises(ShapeError):
        d.q_probs(torch.full((1, 2), 4), torch.tensor([0]))


# ---- VQ-Diffusion mask-and-replace and CDCD ----



def test_mask_and_replace_schedule_and_matrices():
    n, T = 3, 6
    at, bt, ct, att, _btt, ctt = alpha_schedule(T, n)
    # the cumulative keep probability is linear from 0.99999 to 0.000009, the mask probability the reverse
    np.testing.assert_allclose(att, np.linspace(0.99999, 0.000009, T), rtol=1e-10)
    np.testing.assert_allclose(ctt, np.linspace(0.000009, 0.99999, T), rtol=1e-12)
    np.testing.assert_allclose(np.cumprod(at), att, rtol=1e-12)
    np.testing.assert_allclose(1 - np.cumprod(1 - ct), ctt, rtol=1e-10)
    d = VQDiffusion(n, T)
    running = np.eye(n + 1)
    for t in range(T):
        q = d.q_onestep_mat(t).numpy()
        np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)
        assert q[n, n] == 1.0 and q[0, 0] == pytest.approx(at[t] + bt[t]) and q[0, n] == pytest.approx(ct[t])
        running = running @ q
        # the dense product equals the closed-form cumulative rows
        closed = d.q_probs(torch.arange(n), torch.full((n,), t)).numpy()
        np.testing.assert_allclose(closed, running[:n], rtol=0, atol=1e-12)


def test_mask_and_replace_posterior_against_bayes_rule():
    n, T = 3, 5
    d = VQDiffusion(n, T)
    mats = [d.q_onestep_mat(t).numpy() for t in range(T)]
    cum = [mats[0]]
    for t in range(1, T):
        cum.append(cum[-1] @ mats[t])
    gen = torch.Generator().manual_seed(0)
    x_t = torch.tensor([0, 3, 2, 3, 1])  # 3 is the mask token
    t = torch.tensor([1, 2, 3, 4, 0])
    p0 = torch.softmax(torch.randn(5, n, generator=gen, dtype=torch.float64), -1)
    got = d.posterior_probs(p0, x_t, t).numpy()
    for b in range(5):
        tt, xt = int(t[b]), int(x_t[b])
        ref = np.zeros(n + 1)
        for x0 in range(n):
            prev = np.eye(n + 1)[x0] if tt == 0 else cum[tt - 1][x0]
            ref += p0[b, x0].item() * mats[tt][:, xt] * prev / cum[tt][x0, xt]
        np.testing.assert_allclose(got[b], ref, rtol=1e-8, atol=1e-15)  # dense products vs closed form
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-12)


def test_vq_diffusion_loss_terms_and_cdcd():
    n, T = 4, 10
    d = VQDiffusion(n, T, auxiliary_loss_weight=0.1, adaptive_auxiliary_loss=True)
    torch.manual_seed(0)
    table = torch.randn(n + 1, n, dtype=torch.float64)

    def model(x, t):
        return table[x]

    x0 = torch.randint(0, n, (3, 16))
    t = torch.tensor([0, 4, 9])
    out = d.training_losses(model, x0, t=t, generator=torch.Generator().manual_seed(1))
    # the auxiliary term away from t = 0 is -sum log p(x_0 | x_t) by hand
    logp = torch.log_softmax(table[out["x_t"]], -1).gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(out["aux"][1:], -logp.sum(1)[1:], rtol=0, atol=1e-12)
    w = torch.tensor([2 - 0 / T, 2 - 4 / T, 2 - 9 / T], dtype=torch.float64)
    torch.testing.assert_close(out["loss"], (out["vb"] + 0.1 * w * out["aux"]) * T)
    assert (out["vb"] >= -1e-9).all()

    shuffled = chunk_shuffle(x0, 8, generator=torch.Generator().manual_seed(2))
    chunks = lambda x: sorted(tuple(x[0, i * 2:(i + 1) * 2].tolist()) for i in range(8))
    assert chunks(shuffled) == chunks(x0)
    cond = torch.tensor([0, 1, 1])
    inter = inter_negatives_from_batch(x0, cond, 2, generator=torch.Generator().manual_seed(3))
    assert inter.shape == (3, 2, 16) and torch.equal(inter[0, 0], x0[1]) | torch.equal(inter[0, 0], x0[2])
    assert torch.equal(inter[1, 0], x0[0]) and torch.equal(inter[2, 1], x0[0])

    res = cdcd_loss(d, model, x0, intra_negatives=shuffled[:, None], inter_negatives=inter, intra_weight=0.01,
                    inter_weight=0.02, t=t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(res["loss"], out["loss"] - 0.01 * res["intra"] - 0.02 * res["inter"])
    # the sample-mode inter term by hand: mean over negatives of (1 + t/T) * T * -sum log p(x^- | x_t)
    lp = torch.log_softmax(table[out["x_t"]], -1)
    by_hand = torch.stack([-lp.gather(-1, inter[:, k, :, None])[..., 0].sum(1) for k in range(2)], 1).mean(1)
    adaptive = 1 + t.double() / T
    torch.testing.assert_close(res["inter"][1:], (adaptive * T * by_hand)[1:], rtol=0, atol=1e-10)
    samples = d.p_sample_loop(model, (2, 16), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 16) and int(samples.max()) < n  # all tokens unmasked at the end


class _TokenNet(torch.nn.Module):
    """An MLP over the one-hot sequence and a timestep embedding -> logits per position."""

    def __init__(self, length: int, k_in: int, k_out: int) -> None:
        super().__init__()
        from xmodal.generative.networks import timestep_embedding

        self.embed_t = timestep_embedding
        self.length, self.k_in, self.k_out = length, k_in, k_out
        self.net = torch.nn.Sequential(torch.nn.Linear(length * k_in + 64, 256), torch.nn.SiLU(),
                                       torch.nn.Linear(256, 256), torch.nn.SiLU(),
                                       torch.nn.Linear(256, length * k_out))

    def forward(self, x, t):
        h = torch.cat([torch.nn.functional.one_hot(x, self.k_in).float().flatten(1), self.embed_t(t, 64)], -1)
        return self.net(h).reshape(-1, self.length, self.k_out)


def _pattern_data(n, gen):
    """(a, a, a, b, b, b) with a, b uniform over 4 tokens: 16 sequences out of 4^6."""
    a, b = torch.randint(0, 4, (n, 1), generator=gen), torch.randint(0, 4, (n, 1), generator=gen)
    return torch.cat([a.expand(n, 3), b.expand(n, 3)], 1)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["absorbing", "uniform", "mask_and_replace"])
def test_discrete_diffusions_learn_a_correlated_token_distribution(kind):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    if kind == "mask_and_replace":
        diffusion, model = VQDiffusion(4, 20), _TokenNet(6, 5, 4)
    else:
        betas = jsd_betas(20) if kind == "absorbing" else cosine_betas(20)
        diffusion, model = D3PM(5, betas, kind), _TokenNet(6, 5, 5)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(300):
        loss = diffusion.training_losses(model, _pattern_data(128, gen), generator=gen)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = diffusion.p_sample_loop(model, (400, 6), generator=torch.Generator().manual_seed(1))
    valid = (samples[:, :3] == samples[:, :1]).all(1) & (samples[:, 3:] == samples[:, 3:4]).all(1) & (samples < 4).all(1)
    # chance for an independent uniform model: (1/4)^4 = 0.4%
    assert valid.float().mean() > 0.8
    pairs = {(int(s[0]), int(s[3])) for s in samples[valid]}
    assert len(pairs) >= 14  # the samples cover the 16 sequences, not one mode
