"""Denoising networks: the timestep embedding against diffusers', the wrapped diffusers U-Net, the factorised
space-time U-Net, and DiT's shapes and adaLN-Zero initialisation."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ShapeError
from xmodal.generative.networks import DiT, SpaceTimeUNet, UNet2d, timestep_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_timestep_embedding_equals_diffusers():
    emb = pytest.importorskip("diffusers.models.embeddings")
    t = torch.tensor([0, 3, 250, 999])
    ref = emb.get_timestep_embedding(t, 64, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_embedding(t, 64), ref, rtol=0, atol=1e-5)


def test_unet2d_wraps_diffusers_with_labels_and_vectors():
    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 500])
    net = UNet2d(8, in_channels=1, out_channels=2, block_out_channels=(16, 32), num_classes=11, norm_num_groups=8)
    assert net(x, t, torch.tensor([3, 10])).shape == (2, 2, 8, 8)
    vec = UNet2d(8, in_channels=1, block_out_channels=(16, 32), cond_dim=5, norm_num_groups=8)
    a, b = vec(x, t, torch.zeros(2, 5)), vec(x, t, torch.ones(2, 5))
    assert a.shape == x.shape and not torch.allclose(a, b)
    with pytest.raises(ShapeError):
        net(x, t)


def test_space_time_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    net = SpaceTimeUNet(3, channels=(8, 16), num_classes=4, groups=4)
    x, t = torch.randn(2, 3, 5, 8, 8), torch.tensor([0, 10])
    y = net(x, t, torch.tensor([0, 3]))
    assert y.shape == x.shape
    assert not torch.allclose(y, net(x, t, torch.tensor([1, 2])))
    # frames are mixed by the temporal convolutions: a change to frame 0 reaches its neighbour
    x2 = x.clone()
    x2[:, :, 0] += 1.0
    diff = (net(x2, t, torch.tensor([0, 3])) - y).abs().amax(dim=(0, 1, 3, 4))
    assert diff[0] > 0 and diff[1] > 0
    assert net(torch.randn(1, 3, 2, 8, 8), t[:1], torch.tensor([0])).shape == (1, 3, 2, 8, 8)  # any length T
    with pytest.raises(ShapeError):
        net(torch.randn(1, 3, 2, 7, 7), t[:1], torch.tensor([0]))


def test_dit_on_images_and_sequences():
    torch.manual_seed(0)
    dit = DiT(4, max_len=16, patch_size=2, out_channels=8, dim=32, depth=2, heads=4, num_classes=10)
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([0, 5, 999])
    y = dit(x, t, torch.tensor([1, 2, 3]))
    assert y.shape == (3, 8, 8, 8) and torch.count_nonzero(y) == 0  # adaLN-Zero: zero at initialisation
    opt = torch.optim.SGD(dit.parameters(), lr=0.1)
    (dit(x, t, torch.tensor([1, 2, 3])) - 1).pow(2).mean().backward()
    opt.step()
    assert torch.count_nonzero(dit(x, t, torch.tensor([1, 2, 3]))) > 0
    seq = DiT(6, max_len=12, patch_size=None, dim=32, depth=1, heads=2, cond_dim=3)
    assert seq(torch.randn(2, 12, 6), t[:2], torch.randn(2, 3)).shape == (2, 12, 6)
    with pytest.raises(ShapeError):
        seq(torch.randn(2, 13, 6), t[:2], torch.randn(2, 3))
    with pytest.raises(ShapeError):
        seq(torch.randn(2, 12, 6), t[:2])  # conditional without its condition


def test_latent_diffusion_over_vae_and_vq_latents():
    from sklearn.datasets import load_digits

    from xmodal.generative.diffusion import GaussianDiffusion, get_named_beta_schedule
    from xmodal.generative.latent import LatentDiffusion
    from xmodal.generative.vq import image_vqvae

    torch.manual_seed(0)
    x = torch.tensor(load_digits().images[:16] / 8.0 - 1.0, dtype=torch.float32).unsqueeze(1)  # real 8x8 digits
    vq = image_vqvae(1, num_codes=16, latent_dim=4, hidden=8, downsample=1)  # latents (4, 4, 4)
    diffusion = GaussianDiffusion(get_named_beta_schedule("cosine", 20))
    denoiser = DiT(4, max_len=4, patch_size=2, dim=32, depth=1, heads=2)
    ldm = LatentDiffusion(vq, denoiser, diffusion)
    scale = ldm.fit_scale_factor(x)
    z = ldm.encode(x)
    assert z.shape == (16, 4, 4, 4) and abs(z.std().item() - 1.0) < 1e-4 and scale > 0
    t = torch.randint(0, 20, (16,), generator=torch.Generator().manual_seed(1))
    noise = torch.randn(z.shape)
    losses = ldm.training_losses(x, t, noise=noise)
    torch.testing.assert_close(losses["loss"], diffusion.training_losses(denoiser, z, t, noise=noise)["loss"])
    losses["loss"].mean().backward()
    assert all(p.grad is None for p in vq.parameters()) and any(p.grad is not None for p in denoiser.parameters())
    out = ldm.sample((2, 4, 4, 4), num_steps=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 8, 8)
    assert ldm.sample((1, 4, 4, 4), generator=torch.Generator().manual_seed(0)).shape == (1, 1, 8, 8)
