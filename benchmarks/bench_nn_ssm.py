"""Selective-scan speed: the chunked parallel scan against the sequential reference, side by side in one run
(forward and forward + backward), with their largest difference.

    .venv/bin/python benchmarks/bench_nn_ssm.py [--batch 4 --length 512 --dim 64 --state 16] \
        [--out benchmarks/results/nn_ssm.md]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from xmodal.nn.encoders.ssm import selective_scan_chunked, selective_scan_sequential


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--dim", type=int, default=64, help="inner channels d")
    ap.add_argument("--state", type=int, default=16, help="state size n")
    ap.add_argument("--chunks", type=int, nargs="+", default=[0, 8, 64], help="0: the default, sqrt(length)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    b, t, d, n = args.batch, args.length, args.dim, args.state
    # Mamba-like magnitudes: dt = softplus(.) in about [1e-3, 0.1] at init, A = -(1..n).
    x = torch.randn(b, t, d, generator=g)
    dt = torch.rand(b, t, d, generator=g) * 0.1
    A = -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1)
    B, C = torch.randn(b, t, n, generator=g), torch.randn(b, t, n, generator=g)
    D = torch.ones(d)
    leaves = [x.requires_grad_(), dt.requires_grad_(), B.requires_grad_(), C.requires_grad_()]

    def fwd(scan, **kw):
        with torch.no_grad():
            return scan(x, dt, A, B, C, D, **kw)

    def fwd_bwd(scan, **kw):
        scan(x, dt, A, B, C, D, **kw).square().mean().backward()
        for leaf in leaves:
            leaf.grad = None

    ref = fwd(selective_scan_sequential)
    rows = [
        (
            "sequential (reference)",
            best_time(lambda: fwd(selective_scan_sequential), args.repeats),
            best_time(lambda: fwd_bwd(selective_scan_sequential), args.repeats),
            0.0,
        )
    ]
    for c in args.chunks:
        c = c or None
        err = float((fwd(selective_scan_chunked, chunk=c) - ref).abs().max() / ref.abs().max())
        rows.append(
            (
                f"chunked, chunk={c or 'sqrt(length)'}",
                best_time(lambda c=c: fwd(selective_scan_chunked, chunk=c), args.repeats),
                best_time(lambda c=c: fwd_bwd(selective_scan_chunked, chunk=c), args.repeats),
                err,
            )
        )
    base_f, base_fb = rows[0][1], rows[0][2]
    lines = [
        "# Selective scan (Mamba S6): chunked parallel scan vs sequential reference",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_nn_ssm.py --batch {b} --length {t} --dim {d} --state {n}`",
        "",
        (
            f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
            f"other jobs shared the 2 cores, so read the ratios. Best of {args.repeats} after a warm-up."
        ),
        "",
        "| scan | forward ms | speed-up | forward+backward ms | speed-up | max diff / max abs |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {name} | {f * 1e3:.1f} | {base_f / f:.2f}x | {fb * 1e3:.1f} | {base_fb / fb:.2f}x | {e:.1e} |"
            for name, f, fb, e in rows
        ],
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
