"""GAN losses against hand values, the penalties on functions with known gradients, the projection and
waveform discriminators (HiFi-GAN's shapes on a real sound), and the EMA update maths and state."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.generative.gan import (
    EMA,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    ProjectionDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    gradient_penalty,
    multi_discriminator_losses,
    r1_penalty,
)

REAL = torch.tensor([2.0, -1.0], dtype=torch.float64)
FAKE = torch.tensor([0.5, -3.0], dtype=torch.float64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_losses_hand_values():
    # Eq. 4 for D: -[log D(x) + log(1 - D(G(z)))], averaged
    d_minimax = -0.5 * (math.log(_sig(2.0)) + math.log(_sig(-1.0))) - 0.5 * (
        math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0)))
    assert discriminator_loss(REAL, FAKE, "minimax").item() == pytest.approx(d_minimax, rel=1e-12)
    assert discriminator_loss(REAL, FAKE, "non_saturating").item() == pytest.approx(d_minimax, rel=1e-12)
    assert generator_loss(FAKE, "minimax").item() == pytest.approx(
        0.5 * (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))), rel=1e-12)
    assert generator_loss(FAKE, "non_saturating").item() == pytest.approx(
        -0.5 * (math.log(_sig(0.5)) + math.log(_sig(-3.0))), rel=1e-12)
    # hinge: mean(relu(1 - r)) + mean(relu(1 + f)) = (0 + 2)/2 + (1.5 + 0)/2
    assert discriminator_loss(REAL, FAKE, "hinge").item() == pytest.approx(1.75)
    assert generator_loss(FAKE, "hinge").item() == pytest.approx(1.25)
    # least squares: mean((r - 1)^2) + mean(f^2) = (1 + 4)/2 + (0.25 + 9)/2
    assert discriminator_loss(REAL, FAKE, "least_squares").item() == pytest.approx(7.125)
    assert generator_loss(FAKE, "least_squares").item() == pytest.approx((0.25 + 16) / 2)
    # Wasserstein: mean(f) - mean(r) = -1.25 - 0.5
    assert discriminator_loss(REAL, FAKE, "wasserstein").item() == pytest.approx(-1.75)
    assert generator_loss(FAKE, "wasserstein").item() == pytest.approx(1.25)
    assert multi_discriminator_losses([REAL, REAL], [FAKE, FAKE]).item() == pytest.approx(2 * 7.125)
    with pytest.raises(ConfigError):
        generator_loss(FAKE, "relativistic")


def test_gradient_penalty_and_r1_on_known_functions():
    w = torch.tensor([3.0, 4.0])  # D(x) = w . x has gradient w everywhere: ||w|| = 5

    class Linear(nn.Module):
        def forward(self, x):
            return x @ w

    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    gp = gradient_penalty(Linear(), real, fake, weight=10.0, generator=torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx(10.0 * (5.0 - 1.0) ** 2)

    class Quadratic(nn.Module):  # D(x) = 0.5 ||x||^2: gradient x
        def forward(self, x):
            return 0.5 * (x**2).sum(-1)

    x = torch.tensor([[1.0, 2.0], [0.0, 3.0]], requires_grad=True)
    r1 = r1_penalty(Quadratic()(x), x, gamma=4.0)
    assert r1.item() == pytest.approx(0.5 * 4.0 * (5.0 + 9.0) / 2)
    r1.backward()  # differentiable (create_graph) so it trains the discriminator
    # WGAN-GP of a unit-gradient function is zero
    unit = gradient_penalty(lambda v: v @ torch.tensor([0.6, 0.8]), real, fake)
    assert unit.item() == pytest.approx(0.0, abs=1e-10)


def test_feature_matching_hand_value():
    real = [[torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])], [torch.tensor([3.0])]]
    fake = [[torch.tensor([2.0, 0.0]), torch.tensor([[1.0]])], [torch.tensor([1.0])]]
    # 2 * (mean(|1-2|, |2-0|) + |0-1| + |3-1|) = 2 * (1.5 + 1 + 2)
    assert feature_matching_loss(real, fake).item() == pytest.approx(9.0)


def test_projection_discriminator_is_linear_plus_class_projection():
    torch.manual_seed(0)
    feats = nn.Sequential(nn.Flatten(), nn.Linear(8, 5))
    disc = ProjectionDiscriminator(feats, num_classes=3, feature_dim=5, spectral=False)
    x, y = torch.randn(4, 2, 4), torch.tensor([0, 2, 1, 2])
    h = torch.relu(feats(x))
    expected = disc.linear(h).squeeze(-1) + (disc.embed.weight[y] * h).sum(-1)
    torch.testing.assert_close(disc(x, y), expected)
    with pytest.raises(ShapeError):
        disc(x, torch.tensor([0, 1, 2, 3]))
    spectral = ProjectionDiscriminator(feats, 3, 5)
    assert spectral(x, y).shape == (4,)


def _real_sound(n: int = 4000) -> torch.Tensor:
    path = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if not path.exists():
        pytest.skip("alsa test sounds are not installed")
    import soundfile as sf

    wav, _ = sf.read(path, dtype="float32")
    return torch.from_numpy(wav[:n] if wav.ndim == 1 else wav[:n, 0])


def test_waveform_discriminators_shapes_and_feature_maps():
    torch.manual_seed(0)
    audio = _real_sound().reshape(1, 1, -1).repeat(2, 1, 1)
    fake = audio + 0.05 * torch.randn_like(audio)
    mpd = MultiPeriodDiscriminator(width=1 / 16)
    logits, fmaps = mpd(audio)
    assert len(logits) == 5 and all(len(f) == 6 for f in fmaps)
    # period 3 reflect-pads 4000 to 4002 samples and folds them to 1334 rows of 3
    assert fmaps[1][0].shape[-1] == 3 and fmaps[1][0].shape[1] == 2
    msd = MultiScaleDiscriminator(width=1 / 8)
    ms_logits, ms_maps = msd(audio.squeeze(1))
    assert len(ms_logits) == 3 and all(len(f) == 8 for f in ms_maps)
    assert ms_maps[1][0].shape[-1] == 2001  # AvgPool1d(4, 2, padding=2) on 4000 samples
    _, fake_maps = msd(fake)
    fm = feature_matching_loss(ms_maps, fake_maps)
    assert fm.item() > 0
    with pytest.raises(ShapeError):
        mpd(torch.zeros(2, 2, 100))


def test_ema_update_maths_warmup_and_state_dict():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
        model.bias.fill_(1.0)
    ema.update(model)  # 0.9 * 1 + 0.1 * 3 = 1.2 ; 0.9 * 0 + 0.1 * 1 = 0.1
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1.2))
    ema.update(model)  # 0.9 * 1.2 + 0.1 * 3 = 1.38
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1.38))
    torch.testing.assert_close(ema.module.bias, torch.full((1,), 0.19))
    assert not any(p.requires_grad for p in ema.module.parameters())

    state = ema.state_dict()
    assert int(state["num_updates"]) == 2
    other = EMA(nn.Linear(2, 1), decay=0.9)
    other.load_state_dict(state)
    torch.testing.assert_close(other.module.weight, ema.module.weight)
    target = nn.Linear(2, 1)
    other.copy_to(target)
    torch.testing.assert_close(target.weight, ema.module.weight)

    warm = EMA(nn.Linear(2, 1), decay=0.999, use_num_updates=True)
    start = warm.module.weight.clone()
    new = nn.Linear(2, 1)
    warm.update(new)  # first update: decay = min(0.999, 2 / 11)
    d = 2 / 11
    torch.testing.assert_close(warm.module.weight, d * start + (1 - d) * new.weight.detach())


@pytest.mark.slow
def test_gan_with_r1_and_ema_learns_the_ring():
    """Two optimizers stepped in turn, the non-saturating loss, R1 on real data and an EMA of the generator:
    the EMA generator's samples beat a single-Gaussian fit by the energy distance on held-out points."""
    from xmodal.generative.toy import energy_distance, gaussian_baseline, sample_toy

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
                             nn.Linear(128, o))

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train, held = sample_toy("ring", 4000, gen), sample_toy("ring", 1000, gen)
    G, D = mlp(8, 2), mlp(2, 1)
    ema = EMA(G, decay=0.99)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(600):
        real = train[torch.randint(0, 4000, (256,), generator=gen)].requires_grad_(True)
        fake = G(torch.randn(256, 8, generator=gen))
        real_logits = D(real)
        loss_d = discriminator_loss(real_logits, D(fake.detach())) + r1_penalty(real_logits, real, gamma=1.0)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = generator_loss(D(fake))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        ema.update(G)
    with torch.no_grad():
        samples = ema(torch.randn(1000, 8, generator=torch.Generator().manual_seed(1)))
    baseline = energy_distance(gaussian_baseline(train, 1000, torch.Generator().manual_seed(2)), held)
    assert energy_distance(samples, held) < 0.5 * baseline
