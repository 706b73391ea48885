"""STOI/ESTOI (xmodal vs pystoi 0.4.1) and PESQ (parallel vs serial), side by side in one run.

Data: 100 five-second 16 kHz utterances of real speech: espeak-ng sentences (alsa-utils voice clips when
espeak-ng is absent), each window degraded with white noise at -5 to 20 dB SNR. Prints a markdown table.

    .venv/bin/python benchmarks/bench_audio.py [--n 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

FS = 16000
SENTENCES = [
    "A man is riding a horse on the beach at sunset.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack for her brother Bob.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her Wednesday at the train station.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The birch canoe slid on the smooth planks while the boy was glued to the sheet.",
]


def speech() -> np.ndarray:
    """One long real-speech track at 16 kHz."""
    parts = []
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            for i, text in enumerate(SENTENCES):
                wav = Path(tmp) / f"{i}.wav"
                subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
                x, fs = sf.read(str(wav), dtype="float64")
                parts += [
                    resample_poly(x, FS // 50, fs // 50) if fs % 50 == 0 else resample_poly(x, FS, fs),
                    np.zeros(FS // 4),
                ]
    else:
        for p in sorted(Path("/usr/share/sounds/alsa").glob("*_*.wav")):
            x, fs = sf.read(str(p), dtype="float64")
            parts += [resample_poly(x, 1, fs // FS), np.zeros(FS // 4)]
    return np.concatenate(parts)


def utterances(n: int, seconds: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    track = speech()
    length = int(seconds * FS)
    track = np.tile(track, int(np.ceil((length + n * 997) / track.size)) + 1)
    rng = np.random.default_rng(0)
    clean = np.stack([track[i * 997 : i * 997 + length] for i in range(n)])  # different offsets
    snrs = np.array([-5, 0, 5, 10, 20])[np.arange(n) % 5]
    noise = rng.standard_normal(clean.shape)
    scale = np.sqrt(np.mean(clean**2, axis=1) / 10 ** (snrs / 10) / np.mean(noise**2, axis=1))
    return clean, clean + noise * scale[:, None]


def timed(fn):
    """Result, wall seconds and CPU seconds of this process (CPU time is the fairer clock on a shared machine;
    it does not see PESQ's worker processes, so PESQ is compared on wall time)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pesq as pesq_ref
    import pystoi

    from xmodal.metrics.audio import pesq_batch, stoi

    clean, noisy = utterances(args.n)
    stoi(clean[:2], noisy[:2], FS)  # warm caches (filter design, plans) outside the timing
    rows = []
    for extended, name in ((False, "STOI"), (True, "ESTOI")):
        ours, t_ours, c_ours = timed(lambda: stoi(clean, noisy, FS, extended=extended))
        ref, t_ref, c_ref = timed(
            lambda: np.array([pystoi.stoi(c, d, FS, extended=extended) for c, d in zip(clean, noisy)])
        )
        err = float(np.max(np.abs(ours - ref)))
        rows.append(
            (
                f"{name}, {args.n} x 5 s @16 kHz",
                f"pystoi {t_ref:.2f} s (cpu {c_ref:.2f} s)",
                f"xmodal {t_ours:.2f} s (cpu {c_ours:.2f} s)",
                f"{t_ref / t_ours:.1f}x (cpu {c_ref / c_ours:.1f}x)",
                f"max abs diff {err:.1e}",
            )
        )
    n_pesq = min(args.n, 40)
    refs, degs = list(clean[:n_pesq]), list(noisy[:n_pesq])
    serial, t_serial, _ = timed(lambda: np.array([pesq_ref.pesq(FS, r, d, "wb") for r, d in zip(refs, degs)]))
    par, t_par, _ = timed(lambda: pesq_batch(refs, degs, FS, "wb", n_workers=args.workers))
    rows.append(
        (
            f"PESQ wb, {n_pesq} x 5 s @16 kHz",
            f"pesq serial {t_serial:.2f} s",
            f"xmodal {args.workers} procs {t_par:.2f} s",
            f"{t_serial / t_par:.1f}x",
            f"max abs diff {float(np.max(np.abs(serial - par))):.1e}",
        )
    )
    print("| task | reference | ours | speed-up | agreement |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
