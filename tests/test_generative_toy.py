"""Learning sanity on 2-D toy distributions: the samplers recover a Gaussian from its exact closed-form
denoiser, and a few hundred steps of diffusion training beat a single-Gaussian fit by the energy distance on
held-out samples. (benchmarks/bench_generative.py runs the longer version on all four distributions.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmodal.errors import ConfigError
from xmodal.generative.diffusion import GaussianDiffusion, get_named_beta_schedule
from xmodal.generative.toy import TOY_NAMES, ToyDenoiser, energy_distance, gaussian_baseline, sample_toy

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_energy_distance_equals_scipy_in_one_dimension():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=300), rng.normal(0.5, 1.3, size=200)
    ours = energy_distance(torch.from_numpy(u)[:, None], torch.from_numpy(v)[:, None])
    assert ours == pytest.approx(stats.energy_distance(u, v) ** 2, rel=1e-10)
    x = torch.randn(50, 2)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_toy_distributions_shapes_and_seeds():
    for name in TOY_NAMES:
        a = sample_toy(name, 500, torch.Generator().manual_seed(0))
        b = sample_toy(name, 500, torch.Generator().manual_seed(0))
        assert a.shape == (500, 2) and torch.equal(a, b) and a.abs().max() < 2.0
    ring = sample_toy("ring", 2000, torch.Generator().manual_seed(0))
    assert ring.norm(dim=1).mean().item() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ConfigError):
        sample_toy("spiral", 3)


def test_samplers_recover_a_gaussian_from_its_exact_denoiser():
    """For x_0 ~ N(mu, s2), E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s2 + 1 - abar)."""
    d = GaussianDiffusion(get_named_beta_schedule("linear", 1000))
    abar = torch.from_numpy(d.alphas_cumprod)
    mu, s2 = 0.5, 0.25

    def exact_eps(x, t):
        a = abar[t].reshape(-1, 1)
        return torch.sqrt(1 - a) * (x - torch.sqrt(a) * mu) / (a * s2 + 1 - a)

    x = d.p_sample_loop(exact_eps, (4000, 1), clip_denoised=False, generator=torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - mu) < 0.03 and abs(x.var().item() - s2) < 0.02
    # DDIM over all 1000 steps is the deterministic flow: N(0, 1) noise maps to mu + s z
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = d.ddim_sample_loop(exact_eps, (4000, 1), noise=noise, clip_denoised=False)
    torch.testing.assert_close(y, mu + 0.5 * noise, rtol=0, atol=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grid", "ring"])
def test_diffusion_beats_a_gaussian_fit_on_held_out_samples(name):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train, held = sample_toy(name, 4000, gen), sample_toy(name, 1000, gen)
    diffusion = GaussianDiffusion(get_named_beta_schedule("linear", 1000))
    model = ToyDenoiser()
    steps, lr = 800, 3e-3
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(steps):
        idx = torch.randint(0, len(train), (512,), generator=gen)
        t = torch.randint(0, 1000, (512,), generator=gen)
        loss = diffusion.training_losses(model, train[idx], t)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    samples = diffusion.ddim_sample_loop(model, (1000, 2), num_steps=50, clip_denoised=False,
                                         generator=torch.Generator().manual_seed(1)).float()
    ours = energy_distance(samples, held)
    baseline = energy_distance(gaussian_baseline(train, 1000, torch.Generator().manual_seed(2)), held)
    floor = energy_distance(sample_toy(name, 1000, torch.Generator().manual_seed(3)), held)
    assert floor < ours < 0.8 * baseline, (floor, ours, baseline)
