"""Stress test of bit-exact resume: kill (SIGKILL) and resume a run many times, and compare its final weights with
an uninterrupted run's; uninterrupted repeats are the control (run-to-run nondeterminism with no resume at all).

    .venv/bin/python benchmarks/stress_resume.py [--cycles 20] [--kills 3] [--controls 3] [--workers 2] \
        [--threads 1] [--out benchmarks/results/resume_stress.md]

Each cycle starts a fresh run directory, kills the run at a random moment after each of ``--kills`` new
checkpoints (so kills land at different steps and at different phases of a step), then lets the last life finish.
A cycle whose final tensors differ from the reference in any bit is reported with the steps it resumed from and
the largest difference. With ``--threads`` above 1, a mismatch in the control as well points at thread-scheduled
reductions rather than at resume.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from xmodal.train import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]


def command(out: Path, args: argparse.Namespace) -> list[str]:
    settings = [
        f"data.n_train={args.n_train}", "data.n_val=64", "model.hidden=32", "model.embed_dim=16",
        "model.dropout=0.1", "data.augment=0.05", f"train.num_workers={args.workers}", f"train.epochs={args.epochs}",
        "train.batch_size=32", "train.grad_accum=2", "train.checkpoint_every=7", "train.keep_last=2",
        "train.log_every=5", "train.warmup=5", "train.progress=false", f"train.threads={args.threads}",
        "train.evaluate=false",
    ]
    cmd = [sys.executable, "-m", "xmodal", "train", str(ROOT / "recipes" / "synthetic_pairs.yaml"), "--out", str(out),
           "--resume"]
    for item in settings:
        cmd += ["--set", item]
    return cmd


def env(threads: int) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != ckpt.FAULT_ENV}
    return dict(e, OMP_NUM_THREADS=str(threads))


def final(out: Path) -> dict[str, torch.Tensor]:
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None
    return load_file(str(latest / ckpt.TENSORS))


def difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """0.0 for identical bits, else the largest absolute difference (inf when the keys differ)."""
    if a.keys() != b.keys():
        return float("inf")
    if all(torch.equal(a[k], b[k]) for k in a):
        return 0.0
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def uninterrupted(out: Path, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    subprocess.run(command(out, args), env=env(args.threads), check=True, capture_output=True, cwd=ROOT)
    return final(out)


def killed_and_resumed(out: Path, args: argparse.Namespace, rng: random.Random) -> tuple[dict[str, torch.Tensor], list[int]]:
    root = out / "checkpoints"
    resumed_from = []
    for _ in range(args.kills):
        before = ckpt.find_latest(root)
        resumed_from.append(int(before.name.split("_")[1]) if before else 0)
        proc = subprocess.Popen(command(out, args), env=env(args.threads), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        while ckpt.find_latest(root) == before and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))  # kill somewhere in the following steps, maybe checkpoints later
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    latest = ckpt.find_latest(root)
    resumed_from.append(int(latest.name.split("_")[1]) if latest else 0)
    subprocess.run(command(out, args), env=env(args.threads), check=True, capture_output=True, cwd=ROOT)
    return final(out), resumed_from


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--controls", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        reference = uninterrupted(Path(tmp) / "reference", args)
        controls = [difference(uninterrupted(Path(tmp) / f"control{i}", args), reference)
                    for i in range(args.controls)]
        for c in range(args.cycles):
            tensors, points = killed_and_resumed(Path(tmp) / f"cycle{c}", args, rng)
            rows.append((c, points, difference(tensors, reference)))
            print(f"cycle {c}: resumed from steps {points}: max |diff| {rows[-1][2]:.3g}", flush=True)
    bad = [r for r in rows if r[2] != 0.0]
    lines = [
        "# Kill-and-resume stress test",
        "",
        (f"Command: `.venv/bin/python benchmarks/stress_resume.py --cycles {args.cycles} --kills {args.kills} "
        f"--controls {args.controls} --workers {args.workers} --threads {args.threads} --epochs {args.epochs}`"),
        "",
        (f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end, "
        f"{time.perf_counter() - started:.0f} s."),
        "",
        f"- uninterrupted repeats differing from the reference: {sum(d != 0.0 for d in controls)} of {len(controls)}",
        f"- kill/resume cycles ({args.kills} kills each, {args.cycles * args.kills} resumes) differing: "
        f"{len(bad)} of {len(rows)}" + (f", largest {max(r[2] for r in bad):.3g}" if bad else ""),
        "",
        "| cycle | resumed from steps | max abs difference |",
        "|---:|---|---:|",
        *[f"| {c} | {', '.join(map(str, p))} | {d:.3g} |" for c, p, d in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
