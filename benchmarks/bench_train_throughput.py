"""Training throughput of the demo model against this machine's fp32 matmul rate, side by side in one run.

1. The fp32 matmul rate: ``n x n`` by ``n x n`` float32 matmuls (2 n^3 FLOPs each), best of several, on the same
   threads the training uses. This is the practical peak for dense fp32 work on this CPU.
2. The demo model, built by the demo's own builder (``xmodal.tasks.trimodal_retrieval.build_model``) from
   ``recipes/demo_trimodal.yaml``: image CNN, audio 1-D CNN on log-mels with padding masks, text MLP on MiniLM
   embeddings, mean pairwise symmetric InfoNCE. The FLOPs of one training step (forward + backward) are counted
   with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; elementwise ops are not counted),
   then timed steps (forward, loss, backward, gradient clipping, AdamW) give samples/s, achieved GFLOP/s, and
   that rate as a fraction of the matmul rate.

Inputs: ``--data shapes`` (default) uses tensors with the demo's shapes: 64x64 RGB images, 384-d text
embeddings, 64-band log-mels with lengths drawn from the real recordings' range (``--min-frames``..
``--max-frames``, 20 ms frames) and padding masks. ``--data real`` takes batches from the demo dataset through
the demo's own Dataset and collate (it builds the dataset on first use, which takes a minute or two).

    .venv/bin/python benchmarks/bench_train_throughput.py [--steps 6] [--batch-size 128] \
        [--data shapes|real] [--out benchmarks/results/train_throughput.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an ``n x n`` matmul (one warm-up first)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def shaped_batch(
    cfg: dict[str, Any], batch_size: int, min_frames: int, max_frames: int, seed: int = 0
) -> dict[str, Any]:
    """A batch with the demo's shapes and padding (random values: throughput depends on shapes only)."""
    g = torch.Generator().manual_seed(seed)
    n_mels = int((cfg.get("data") or {}).get("n_mels", 64))
    size = int(((cfg.get("data") or {}).get("options") or {}).get("image_size", 64))
    lengths = torch.randint(min_frames, max_frames + 1, (batch_size,), generator=g)
    t = int(lengths.max())
    mask = torch.arange(t)[None, :] < lengths[:, None]
    audio = torch.randn(batch_size, n_mels, t, generator=g) * mask[:, None, :]
    return {
        "image": torch.rand(batch_size, 3, size, size, generator=g),
        "audio": audio,
        "audio_mask": mask,
        "text": torch.randn(batch_size, 384, generator=g),
        "id": [str(i) for i in range(batch_size)],
    }


def real_batches(cfg: dict[str, Any], batch_size: int, count: int) -> list[dict[str, Any]]:
    """``count`` training batches from the demo dataset via the task's own Dataset and collate."""
    from xmodal.tasks.trimodal_retrieval import TrimodalDataset, collate, prepare_data

    items, d = prepare_data(cfg, progress=False)
    data = TrimodalDataset(items, "train", d, train=True)
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        idx = torch.randint(len(data), (batch_size,), generator=gen).tolist()
        out.append(collate([data[i] for i in idx]))
    return out


def step_flops(model: torch.nn.Module, loss_fn, batch: dict[str, Any]) -> tuple[int, int, dict[str, int]]:
    """FLOPs of one forward + backward, of the forward alone, and of each encoder's forward. (Per-module counts
    are taken from a forward-only pass: the counter's module tracker does not attribute backward ops reliably.)"""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn(model(batch), batch).backward()
    model.zero_grad(set_to_none=True)
    forward = FlopCounterMode(display=False)
    with forward, torch.no_grad():
        loss_fn(model(batch), batch)
    per_module = forward.get_flop_counts()
    towers = {
        name: sum(per_module.get(f"{type(model).__name__}.encoders.{name}", {}).values())
        for name in getattr(model, "encoders", {})
    }
    return counter.get_total_flops(), forward.get_total_flops(), towers


def per_pair_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """The formulation the demo trained with before: every pair's InfoNCE on its own, each with its own two
    logit matrices, a gather per pair and a NaN/inf check (a host synchronisation) per pair."""
    from itertools import combinations

    import torch.nn.functional as F

    from xmodal.nn.objectives import gather_with_grad

    e = {k[: -len("_emb")]: v for k, v in outputs.items() if k.endswith("_emb")}
    scale = outputs["logit_scale"]
    total = torch.zeros(())
    pairs = list(combinations(e, 2))
    for x, y in pairs:
        a, b = e[x], e[y]
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise FloatingPointError(f"{x}/{y} embeddings hold NaN or inf")
        (all_a, offset), (all_b, _) = gather_with_grad(a), gather_with_grad(b)
        labels = torch.arange(a.shape[0]) + offset
        total = total + (F.cross_entropy(scale * a @ all_b.T, labels) + F.cross_entropy(scale * b @ all_a.T, labels)) / 2
    return total / len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo_trimodal.yaml")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the recipe's train.batch_size")
    ap.add_argument("--steps", type=int, default=6, help="timed training steps (after one warm-up step)")
    ap.add_argument("--data", choices=["shapes", "real"], default="shapes")
    ap.add_argument("--data-root", type=Path, default=None, help="--data real: where datasets are cached")
    ap.add_argument("--min-frames", type=int, default=20, help="shortest log-mel (frames of 20 ms)")
    ap.add_argument("--max-frames", type=int, default=200, help="longest log-mel (frames of 20 ms)")
    ap.add_argument("--matmul-n", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--per-pair", action="store_true",
                    help="also time each step with the per-pair loss formulation, interleaved with the default")
    args = ap.parse_args()

    from xmodal.tasks.trimodal_retrieval import build_model, loss_fn

    cfg = yaml.safe_load(args.recipe.read_text())
    if args.data_root is not None:
        cfg.setdefault("data", {})["root"] = str(args.data_root)
    train = cfg.get("train") or {}
    batch_size = args.batch_size or int(train.get("batch_size", 128))
    threads = torch.get_num_threads()

    peak = matmul_gflops(args.matmul_n)
    print(f"fp32 matmul {args.matmul_n}^3: {peak:.1f} GFLOP/s on {threads} threads")

    torch.manual_seed(0)
    model = build_model(cfg).train()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if args.data == "real":
        batches = real_batches(cfg, batch_size, args.steps + 1)
    else:
        batches = [
            shaped_batch(cfg, batch_size, args.min_frames, args.max_frames, seed=s)
            for s in range(args.steps + 1)
        ]
    flops, fwd_flops, towers = step_flops(model, loss_fn, batches[0])
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=float(train.get("lr", 1e-3)),
        weight_decay=float(train.get("weight_decay", 0.01)),
    )

    def step(batch: dict[str, Any], loss_of: Any = loss_fn) -> float:
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model(batch), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    step(batches[0])  # warm-up (allocator, oneDNN kernel selection)
    load_before = os.getloadavg()[0]
    times, frames_per_batch, fractions, pair_fractions = [], [], [], []
    for b in batches[1:]:
        # A matmul rate taken right before each step: on a shared machine the load drifts between steps, and
        # the per-step ratio cancels most of it.
        local_peak = matmul_gflops(args.matmul_n, repeats=2)
        t0 = time.perf_counter()
        step(b)
        times.append(time.perf_counter() - t0)
        frames_per_batch.append(int(b["audio"].shape[-1]))
        fractions.append(flops / times[-1] / 1e9 / local_peak)
        if args.per_pair:  # the same batch right after, through the per-pair loss (same FLOPs but two matmuls)
            t0 = time.perf_counter()
            step(b, per_pair_loss)
            pair_fractions.append(flops / (time.perf_counter() - t0) / 1e9 / local_peak)
    load_after = os.getloadavg()[0]
    pair_fractions.sort()
    times.sort()
    fractions.sort()
    median = times[len(times) // 2]
    samples_s = batch_size / median
    achieved = flops / median / 1e9  # FLOPs of batch 0; padded lengths vary a little between batches
    peak_after = matmul_gflops(args.matmul_n)  # again: the shared machine's load drifts
    peak_mean = (peak + peak_after) / 2

    lines = [
        "# Training throughput of the demo model",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_train_throughput.py --steps {args.steps} --data {args.data}"
        + (f" --batch-size {args.batch_size}" if args.batch_size else "")
        + (f" --data-root {args.data_root}" if args.data_root else "")
        + (" --per-pair" if args.per_pair else "")
        + "`",
        "",
        (
            f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
            "Other jobs shared the 2 cores during the run, so absolute numbers are lower bounds; the fraction "
            "of the matmul rate (measured before and after, in the same run) is the figure to read."
        ),
        "",
        f"Model: `xmodal.tasks.trimodal_retrieval.build_model` on `{args.recipe.relative_to(ROOT)}` "
        f"({n_params / 1e6:.2f} M trainable parameters), batch {batch_size}, fp32, AdamW + clipping. Inputs: "
        + (
            "real demo batches (emoji_speech via the task's Dataset and collate)"
            if args.data == "real"
            else f"demo-shaped tensors (64x64 images, 384-d text, log-mels of {args.min_frames}-{args.max_frames} "
            "frames with masks)"
        )
        + f"; padded audio length {min(frames_per_batch)}-{max(frames_per_batch)} frames.",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| fp32 matmul rate ({args.matmul_n}^3, best of 5; before / after) | {peak:.1f} / {peak_after:.1f} GFLOP/s |",
        f"| FLOPs per training step (forward + backward, FlopCounterMode) | {flops / 1e9:.1f} GFLOP |",
        f"| of which forward | {fwd_flops / 1e9:.1f} GFLOP |",
        *[f"| forward of the {k} encoder | {v / 1e9:.2f} GFLOP |" for k, v in towers.items()],
        f"| step time (median of {len(times)}; min {times[0]:.2f} s, max {times[-1]:.2f} s) | {median:.2f} s |",
        f"| training throughput | {samples_s:.1f} samples/s |",
        f"| achieved | {achieved:.1f} GFLOP/s |",
        f"| fraction of the matmul rate (mean of before/after) | {achieved / peak_mean:.1%} |",
        (
            f"| fraction of the matmul rate measured just before each step (median; min-max) | "
            f"{fractions[len(fractions) // 2]:.1%} ({fractions[0]:.1%}-{fractions[-1]:.1%}) |"
        ),
        *(
            [f"| the same, per-pair loss formulation (interleaved step by step, same batches) | "
             f"{pair_fractions[len(pair_fractions) // 2]:.1%} ({pair_fractions[0]:.1%}-{pair_fractions[-1]:.1%}) |"]
            if pair_fractions else []
        ),
        f"| load average (1 min) before / after the timed steps | {load_before:.1f} / {load_after:.1f} |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
