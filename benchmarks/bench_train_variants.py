"""Training throughput of demo-model variants side by side in one run, as a fraction of the fp32 matmul rate.

Variants (``--variants``, comma-separated): ``batchnorm`` (the image tower as it was, BatchNorm), ``groupnorm``
(GroupNorm, exact under accumulation and data parallelism), ``groupnorm_cl`` (GroupNorm with the image tower's
kernels and activations channels-last: the demo's default), ``groupnorm_cl_input`` (only the input converted,
the kernels left contiguous). Rounds alternate the variants so that the load of a shared machine
drifts over all of them alike; a matmul rate is taken right before each step and the per-step ratio is reported.
The step is the trainer's: forward, the contrastive loss, backward, clipping, AdamW with its parameter groups.

    .venv/bin/python benchmarks/bench_train_variants.py [--rounds 5] [--threads 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_train_throughput import matmul_gflops, shaped_batch, step_flops

VARIANTS = {
    "batchnorm": ({"image_norm": "batch", "image_channels_last": False}, False),
    "groupnorm": ({"image_norm": "group", "image_channels_last": False}, False),
    "groupnorm_cl": ({"image_norm": "group", "image_channels_last": True}, False),
    "groupnorm_cl_input": ({"image_norm": "group", "image_channels_last": False}, "input"),
}


def build(cfg: dict[str, Any], name: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from xmodal.tasks.trimodal_retrieval import build_model
    from xmodal.train.optim import build_adamw

    model_over, channels_last = VARIANTS[name]
    torch.manual_seed(0)
    model = build_model({**cfg, "model": {**(cfg.get("model") or {}), **model_over}}).train()
    if channels_last == "input":  # activations channels-last, kernels as they are
        model.encoders["image"].memory_format = torch.channels_last
    train = cfg.get("train") or {}
    opt = build_adamw(model, float(train.get("lr", 1e-3)), (0.9, 0.999), float(train.get("weight_decay", 0.01)))
    return model, opt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo_trimodal.yaml")
    ap.add_argument("--variants", default="batchnorm,groupnorm,groupnorm_cl,groupnorm_cl_input")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from xmodal.tasks.trimodal_retrieval import loss_fn

    cfg = yaml.safe_load(args.recipe.read_text())
    names = args.variants.split(",")
    batches = [shaped_batch(cfg, args.batch_size, 20, 200, seed=s) for s in range(args.rounds + 1)]
    runs = {n: build(cfg, n) for n in names}
    flops = {n: step_flops(runs[n][0], loss_fn, batches[0])[0] for n in names}

    def step(name: str, batch: dict[str, Any]) -> float:
        model, opt = runs[name]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(batch), batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return time.perf_counter() - t0

    for n in names:
        step(n, batches[0])  # warm-up
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {n: [] for n in names}
    fractions: dict[str, list[float]] = {n: [] for n in names}
    peaks = []
    for r in range(args.rounds):
        for n in names:
            peak = matmul_gflops(2048, repeats=2)
            peaks.append(peak)
            seconds = step(n, batches[r + 1])
            times[n].append(seconds)
            fractions[n].append(flops[n] / seconds / 1e9 / peak)
    load_after = os.getloadavg()[0]
    med = lambda v: sorted(v)[len(v) // 2]
    lines = [
        "# Demo-model training step: variants side by side",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_train_variants.py --rounds {args.rounds}"
        + (f" --threads {args.threads}" if args.threads else "") + "`",
        "",
        (f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}; load average {load_before:.2f} before, {load_after:.2f} after; fp32 matmul rate "
        f"(2048^3) {min(peaks):.1f}-{max(peaks):.1f} GFLOP/s. Batch {args.batch_size}, demo-shaped tensors."),
        "",
        "| variant | GFLOP per step | step time (median) | samples/s | fraction of the matmul rate (median; min-max) |",
        "|---|---:|---:|---:|---:|",
    ]
    for n in names:
        f = sorted(fractions[n])
        lines.append(f"| {n} | {flops[n] / 1e9:.1f} | {med(times[n]):.3f} s | {args.batch_size / med(times[n]):.1f} | "
                     f"{med(f):.1%} ({f[0]:.1%}-{f[-1]:.1%}) |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
