"""2048-d Frechet distance: xmodal's symmetric route against scipy ``sqrtm`` (pytorch-fid's route) and
non-symmetric ``eigvals`` (torch-fidelity's route), side by side on the same statistics.

    .venv/bin/python benchmarks/bench_frechet.py [--dim 2048] [--samples 4096] [--repeats 3] [--no-eigvals]

Prints wall times, the speed-up over each reference and the relative difference of the values.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy
import torch
from scipy import linalg

from xmodal.metrics.vision import frechet_distance


def reference_sqrtm(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's calculate_frechet_distance route: scipy sqrtm of the product, real part of the trace."""
    covmean = linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def reference_eigvals(mu1, s1, mu2, s2) -> float:
    """torch-fidelity's fid_statistics_to_metric route: sum of sqrt of the product's eigenvalues."""
    diff = mu1 - mu2
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1.dot(s2)).astype("complex128")).real)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr)


def timed(fn, *args, repeats: int = 1) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return value, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-eigvals", action="store_true")
    args = ap.parse_args()

    # Feature-like statistics: full rank, correlated, different means (as pool3 features of two image sets).
    rng = np.random.default_rng(0)
    d, n = args.dim, args.samples
    mix = np.eye(d) + 0.05 * rng.standard_normal((d, d))
    a = np.abs(rng.standard_normal((n, d)))
    b = np.abs(rng.standard_normal((n, d)) @ mix) + 0.01
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)

    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}; d={d}, n={n}")
    ours, t_ours = timed(frechet_distance, mu1, s1, mu2, s2, repeats=args.repeats)
    print(f"xmodal symmetric (cholesky + eigvalsh): {t_ours:8.3f} s  value {ours:.10f}")
    ref, t_ref = timed(reference_sqrtm, mu1, s1, mu2, s2)
    print(f"scipy sqrtm (pytorch-fid):              {t_ref:8.3f} s  value {ref:.10f}  "
          f"speed-up x{t_ref / t_ours:.1f}  rel diff {abs(ours - ref) / abs(ref):.2e}")
    if not args.no_eigvals:
        ref2, t_ref2 = timed(reference_eigvals, mu1, s1, mu2, s2)
        print(f"numpy eigvals (torch-fidelity):         {t_ref2:8.3f} s  value {ref2:.10f}  "
              f"speed-up x{t_ref2 / t_ours:.1f}  rel diff {abs(ours - ref2) / abs(ref2):.2e}")


if __name__ == "__main__":
    main()
