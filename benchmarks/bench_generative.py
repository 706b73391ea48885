"""Generative backbones, side by side in one run:

1. toy learning: Gaussian diffusion on the four 2-D toy distributions, energy distance of 2,000 samples to
   held-out data against a single-Gaussian fit and the data's own noise floor;
2. sampling throughput (samples/s) of ancestral sampling (the respaced chain) against DDIM at 10, 50 and 250
   steps, for the toy MLP and a small diffusers U-Net on 8x8 images;
3. a training step of the 8x8-digit U-Net through ``GaussianDiffusion.training_losses`` against a plain loop
   that calls diffusers' ``DDPMScheduler.add_noise`` and an MSE directly.

    .venv/bin/python benchmarks/bench_generative.py [--toy-steps 3000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from xmodal.generative.diffusion import GaussianDiffusion, get_named_beta_schedule
from xmodal.generative.networks import UNet2d
from xmodal.generative.toy import TOY_NAMES, ToyDenoiser, energy_distance, gaussian_baseline, sample_toy


def train_toy(name: str, steps: int, batch: int = 512, lr: float = 3e-3):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    train, held = sample_toy(name, 8000, gen), sample_toy(name, 2000, gen)
    diffusion = GaussianDiffusion(get_named_beta_schedule("linear", 1000))
    model = ToyDenoiser()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(train), (batch,), generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        loss = diffusion.training_losses(model, train[idx], t)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - start
    samples = diffusion.ddim_sample_loop(model, (2000, 2), num_steps=250, clip_denoised=False,
                                         generator=torch.Generator().manual_seed(1)).float()
    return {
        "model": energy_distance(samples, held),
        "gaussian": energy_distance(gaussian_baseline(train, 2000, torch.Generator().manual_seed(2)), held),
        "floor": energy_distance(sample_toy(name, 2000, torch.Generator().manual_seed(3)), held),
        "train_s": train_s,
    }, model, diffusion


def throughput(model, diffusion: GaussianDiffusion, shape, steps: int, kind: str) -> float:
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    if kind == "ddim":
        diffusion.ddim_sample_loop(model, shape, num_steps=steps, clip_denoised=False, generator=gen)
    else:
        spaced = diffusion.respaced(diffusion.ddim_timesteps(steps))
        spaced.p_sample_loop(model, shape, clip_denoised=False, generator=gen)
    return shape[0] / (time.perf_counter() - start)


def digits_batch(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images / 8.0 - 1.0, dtype=torch.float32).unsqueeze(1)
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]


def training_step_comparison(steps: int, batch: int = 64) -> dict[str, float]:
    import diffusers

    x = digits_batch(batch)
    betas = get_named_beta_schedule("linear", 1000)
    results = {}
    for side in ("xmodal", "diffusers", "xmodal", "diffusers"):  # interleaved, best of two
        torch.manual_seed(0)
        net = UNet2d(8, in_channels=1, block_out_channels=(32, 64), norm_num_groups=8)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        diffusion = GaussianDiffusion(betas)
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=betas.tolist())
        gen = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(steps):
            t = torch.randint(0, 1000, (batch,), generator=gen)
            noise = torch.randn(x.shape, generator=gen)
            if side == "xmodal":
                loss = diffusion.training_losses(net, x, t, noise=noise)["loss"].mean()
            else:
                noisy = scheduler.add_noise(x, noise, t)
                loss = F.mse_loss(net(noisy, t), noise)
            opt.zero_grad()
            loss.backward()
            opt.step()
        per_step = (time.perf_counter() - start) / steps
        results[side] = min(results.get(side, float("inf")), per_step)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--toy-steps", type=int, default=3000)
    ap.add_argument("--quick", action="store_true", help="fewer steps everywhere (a smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (1: these models are small)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    toy_steps = 300 if args.quick else args.toy_steps
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    print(f"\n1. toy distributions: {toy_steps} steps of batch 512, DDIM-250 samples, energy distance x 1e3")
    print(f"{'distribution':12s} {'model':>8s} {'gaussian':>9s} {'floor':>7s} {'train s':>8s}")
    toy_model = toy_diffusion = None
    for name in TOY_NAMES:
        res, model, diffusion = train_toy(name, toy_steps)
        toy_model, toy_diffusion = (model, diffusion) if name == "moons" else (toy_model, toy_diffusion)
        print(f"{name:12s} {1e3 * res['model']:8.2f} {1e3 * res['gaussian']:9.2f} {1e3 * res['floor']:7.2f} "
              f"{res['train_s']:8.1f}")

    print("\n2. sampling throughput, samples/s (ancestral = respaced DDPM chain)")
    torch.manual_seed(0)
    unet = UNet2d(8, in_channels=1, block_out_channels=(32, 64), norm_num_groups=8).eval()
    unet_diffusion = GaussianDiffusion(get_named_beta_schedule("linear", 1000))
    cases = [("toy MLP, 2,000 points", toy_model, toy_diffusion, (2000, 2)),
             ("U-Net 8x8, batch 16", unet, unet_diffusion, (16, 1, 8, 8))]
    step_list = (10, 50) if args.quick else (10, 50, 250)
    for label, model, diffusion, shape in cases:
        for steps in step_list:
            anc = throughput(model, diffusion, shape, steps, "ancestral")
            ddim = throughput(model, diffusion, shape, steps, "ddim")
            print(f"{label:24s} {steps:4d} steps: ancestral {anc:10.1f}  ddim {ddim:10.1f}  ratio {ddim / anc:.2f}")

    steps = 3 if args.quick else 10
    print(f"\n3. training step of the 8x8-digit U-Net, batch 64, best of two interleaved runs of {steps} steps")
    res = training_step_comparison(steps)
    print(f"xmodal training_losses {1e3 * res['xmodal']:.1f} ms/step, plain diffusers loop "
          f"{1e3 * res['diffusers']:.1f} ms/step, ratio {res['xmodal'] / res['diffusers']:.2f}")


if __name__ == "__main__":
    main()
