"""The digit diffusion model of ``recipes/generative_digits.yaml`` (a label-conditioned MLP denoiser with
classifier-free guidance and an EMA), side by side:

1. training: ``xmodal train``'s loop (the task's step: per-sample seeded data loading, condition dropout,
   float64 diffusion coefficients, AdamW, clipping, cosine schedule, EMA after every step) against a plain loop
   over the same model that calls diffusers directly (``DDPMScheduler.add_noise`` with the recipe's betas, an
   MSE on the recipe's target through ``DDPMScheduler.get_velocity`` for v-prediction, AdamW, diffusers'
   ``EMAModel``), same batch size and step count, alternated and the best of ``--repeats`` taken for each.
   A step is timed from the end of step 1 to the end of the last (wall clock and this process's CPU time: on a
   machine shared with other work the CPU time is the steadier of the two); ``xmodal train``'s whole
   ``train_seconds`` over the steps is printed too (it adds step 1 and the checkpoint written at the end);
2. sampling throughput (samples/s) of the trained guided model: ancestral sampling (the respaced DDPM chain)
   against DDIM at 10, 50 and 250 steps.

    .venv/bin/python benchmarks/bench_generative_train_step.py [--steps 200] [--batch 256] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from xmodal.config.recipe import load_recipe
from xmodal.tasks.base import build_task
from xmodal.train.loop import train

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "generative_digits.yaml"


class StepClock:
    """Wall and CPU time at the end of every step; ``per_step`` averages from the end of step 1 to the last."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def per_step(self) -> tuple[float, float]:
        n = len(self.wall) - 1
        return (self.wall[-1] - self.wall[0]) / n, (self.cpu[-1] - self.cpu[0]) / n


def xmodal_step(steps: int, batch: int) -> tuple[float, float, float]:
    """``(wall, CPU, train_seconds / steps)`` seconds per step of ``xmodal train`` on the digits recipe (no
    evaluation, samples or periodic checkpoint; the one at the end is in ``train_seconds``)."""
    cfg = load_recipe(RECIPE, [f"train.max_steps={steps}", f"train.batch_size={batch}", "train.checkpoint_every=0",
                               "train.eval_every=0", "train.evaluate=false", "train.sample_every=0",
                               "train.progress=false", "train.tensorboard=false", f"train.log_every={steps}"])
    torch.manual_seed(0)
    bundle = build_task(cfg)
    clock, ema = StepClock(), bundle.after_step

    def after_step(model: torch.nn.Module, step: int) -> None:  # the task's EMA update, then the clock
        if ema is not None:
            ema(model, step)
        clock.tick()

    with tempfile.TemporaryDirectory() as out:
        result = train(dataclasses.replace(bundle, after_step=after_step), cfg, out_dir=out)
    return (*clock.per_step(), result.train_seconds / steps)


def plain_diffusers_step(steps: int, batch: int) -> tuple[float, float]:
    """``(wall, CPU)`` seconds per step of a hand loop over the recipe's network, calling diffusers for the noising, the
    training target and the EMA: the recipe's betas (``model.schedule``) and target (``model.prediction``), its
    learning rate, weight decay, clipping, condition dropout and EMA decay; no schedule of the rate."""
    import diffusers
    from diffusers.training_utils import EMAModel

    from xmodal.config.schema import parse_section
    from xmodal.generative.diffusion import get_named_beta_schedule
    from xmodal.tasks.generative_digits import DataConfig, DiffusionDigits, ModelConfig, split_digits

    cfg = load_recipe(RECIPE, [])
    d = parse_section(DataConfig, cfg.get("data"), "data")
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    train_cfg = cfg["train"]
    x16, y, _, _ = split_digits(d.n_train, d.seed)
    x = torch.tensor(x16 / 8.0 - 1.0, dtype=torch.float32)
    labels = torch.tensor(y)
    torch.manual_seed(0)
    model = DiffusionDigits(m).denoiser  # the guided MLP xmodal trains: ClassifierFreeGuidance(ConditionalMLP)
    ema = EMAModel(model.parameters(), decay=m.ema_decay)
    prediction = {"epsilon": "epsilon", "v": "v_prediction", "x_start": "sample"}[m.prediction]
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=m.timesteps,
                                        trained_betas=get_named_beta_schedule(m.schedule, m.timesteps).tolist(),
                                        prediction_type=prediction)
    opt = torch.optim.AdamW(model.parameters(), lr=float(train_cfg["lr"]),
                            weight_decay=float(train_cfg["weight_decay"]))
    clip = float(train_cfg["grad_clip"])
    gen = torch.Generator().manual_seed(0)
    clock = StepClock()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        t = torch.randint(0, m.timesteps, (batch,), generator=gen)
        noise = torch.randn(batch, 64, generator=gen)
        x0 = x[idx]
        noisy = scheduler.add_noise(x0, noise, t)
        if prediction == "v_prediction":
            target = scheduler.get_velocity(x0, noise, t)
        else:
            target = noise if prediction == "epsilon" else x0
        loss = torch.nn.functional.mse_loss(model(noisy, t, cond=labels[idx]), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        ema.step(model.parameters())
        clock.tick()
    return clock.per_step()


def sampling_throughput(n: int) -> list[tuple[int, float, float]]:
    """``(steps, ancestral samples/s, DDIM samples/s)`` for ``n`` guided digits (a freshly built model: the cost
    of a step does not depend on the weights)."""
    cfg = load_recipe(RECIPE, [])
    torch.manual_seed(0)
    model = build_task(cfg).model.eval()
    guided = model.ema.module.guided(model.guidance)  # the recipe's guidance scale
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
    model = load_recipe(RECIPE, [])["model"]
    print(f"recipe {RECIPE.name}: schedule {model.get('schedule')}, prediction {model.get('prediction')}, "
          f"guidance {model.get('guidance')}, hidden {model.get('hidden')}")
    ours: list[tuple[float, float, float]] = []
    plain: list[tuple[float, float]] = []
    for _ in range(args.repeats):  # alternated, so that a change in the machine's load hits both
        ours.append(xmodal_step(args.steps, args.batch))
        plain.append(plain_diffusers_step(args.steps, args.batch))
    print(f"\n1. training step, digit diffusion model, batch {args.batch}, {args.steps} steps, best of {args.repeats}")
    for k, clock in enumerate(("wall", "CPU")):
        best_ours, best_plain = min(r[k] for r in ours), min(r[k] for r in plain)
        print(f"{clock:4s} xmodal train {1e3 * best_ours:.1f} ms/step, plain diffusers loop {1e3 * best_plain:.1f} "
              f"ms/step, ratio {best_ours / best_plain:.2f}  (all runs: xmodal {[round(1e3 * r[k], 1) for r in ours]}, "
              f"plain {[round(1e3 * r[k], 1) for r in plain]})")
    print(f"xmodal train_seconds / steps (step 1 and the final checkpoint included): best "
          f"{1e3 * min(r[2] for r in ours):.1f} ms  (all runs: {[round(1e3 * r[2], 1) for r in ours]})")
    print(f"\n2. sampling throughput of the guided digit model, {args.samples} digits, samples/s")
    for steps, ancestral, ddim in sampling_throughput(args.samples):
        print(f"{steps:4d} steps: ancestral {ancestral:9.1f}  ddim {ddim:9.1f}  ratio {ddim / ancestral:.2f}")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
