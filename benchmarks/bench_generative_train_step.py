"""The digit diffusion model of ``recipes/generative_digits.yaml`` (a label-conditioned MLP denoiser with
classifier-free guidance and an EMA), side by side:

1. training: ``xmodal train``'s loop (the task's step: per-sample seeded data loading, condition dropout,
   float64 diffusion coefficients, AdamW, clipping, cosine schedule, EMA after every step) against a plain loop
   over the same model that calls diffusers directly (``DDPMScheduler.add_noise``, an MSE on the noise,
   AdamW, diffusers' ``EMAModel``), same batch size and step count, alternated and the best of ``--repeats``
   taken for each;
2. sampling throughput (samples/s) of the trained guided model: ancestral sampling (the respaced DDPM chain)
   against DDIM at 10, 50 and 250 steps.

    .venv/bin/python benchmarks/bench_generative_train_step.py [--steps 200] [--batch 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from xmodal.config.recipe import load_recipe
from xmodal.tasks.base import build_task
from xmodal.train.loop import train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "generative_digits.yaml"


def xmodal_step(steps: int, batch: int) -> float:
    """Seconds per step of ``xmodal train`` on the digits recipe (no checkpoint, evaluation or samples)."""
    cfg = load_recipe(RECIPE, [f"train.max_steps={steps}", f"train.batch_size={batch}", "train.checkpoint_every=0",
                               "train.eval_every=0", "train.evaluate=false", "train.sample_every=0",
                               "train.progress=false", "train.tensorboard=false", f"train.log_every={steps}"])
    torch.manual_seed(0)
    bundle = build_task(cfg)
    with tempfile.TemporaryDirectory() as out:
        result = train(bundle, cfg, out_dir=out)
    return result.train_seconds / steps


def plain_diffusers_step(steps: int, batch: int) -> float:
    """Seconds per step of a hand loop over the same network, calling diffusers for the noising and the EMA."""
    import diffusers
    from diffusers.training_utils import EMAModel

    from xmodal.generative.diffusion import get_named_beta_schedule
    from xmodal.generative.guidance import ClassifierFreeGuidance
    from xmodal.tasks.generative_digits import ConditionalMLP, split_digits

    x16, y, _, _ = split_digits(1200, 0)
    x = torch.tensor(x16 / 8.0 - 1.0, dtype=torch.float32)
    labels = torch.tensor(y)
    torch.manual_seed(0)
    model = ClassifierFreeGuidance(ConditionalMLP(hidden=256), num_classes=10, p_uncond=0.1)
    ema = EMAModel(model.parameters(), decay=0.999)
    betas = get_named_beta_schedule("linear", 1000)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=betas.tolist())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(batch, 64, generator=gen)
        noisy = scheduler.add_noise(x[idx], noise, t)
        loss = torch.nn.functional.mse_loss(model(noisy, t, cond=labels[idx]), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.step(model.parameters())
    return (time.perf_counter() - start) / steps


def sampling_throughput(n: int) -> list[tuple[int, float, float]]:
    """``(steps, ancestral samples/s, DDIM samples/s)`` for ``n`` guided digits (a freshly built model: the cost
    of a step does not depend on the weights)."""
    cfg = load_recipe(RECIPE, [])
    torch.manual_seed(0)
    model = build_task(cfg).model.eval()
    guided = model.ema.module.guided(2.0)
    labels = torch.arange(n) % 10
    rows = []
    for steps in (10, 50, 250):
        start = time.perf_counter()
        spaced = model.diffusion.respaced(model.diffusion.ddim_timesteps(steps))
        with torch.no_grad():
            spaced.p_sample_loop(guided, (n, 64), model_kwargs={"cond": labels},
                                 generator=torch.Generator().manual_seed(0))
        ancestral = n / (time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            model.diffusion.ddim_sample_loop(guided, (n, 64), num_steps=steps, model_kwargs={"cond": labels},
                                             generator=torch.Generator().manual_seed(0))
        rows.append((steps, ancestral, n / (time.perf_counter() - start)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads 1, load average {os.getloadavg()}")
    ours, plain = [], []
    for _ in range(args.repeats):  # alternated, so that a change in the machine's load hits both
        ours.append(xmodal_step(args.steps, args.batch))
        plain.append(plain_diffusers_step(args.steps, args.batch))
    print(f"\n1. training step, digit diffusion model, batch {args.batch}, {args.steps} steps, best of {args.repeats}")
    print(f"xmodal train {1e3 * min(ours):.1f} ms/step, plain diffusers loop {1e3 * min(plain):.1f} ms/step, "
          f"ratio {min(ours) / min(plain):.2f}  (all runs: xmodal {[round(1e3 * s, 1) for s in ours]}, "
          f"plain {[round(1e3 * s, 1) for s in plain]})")
    print(f"\n2. sampling throughput of the guided digit model, {args.samples} digits, samples/s")
    for steps, ancestral, ddim in sampling_throughput(args.samples):
        print(f"{steps:4d} steps: ancestral {ancestral:9.1f}  ddim {ddim:9.1f}  ratio {ddim / ancestral:.2f}")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
