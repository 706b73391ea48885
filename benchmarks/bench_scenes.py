"""Scene dataset build rate: clips per second of ``xmodal data build <name>-scenes`` with 1 and 2 processes.

Each clip is a 10-s scene rendered at 128 x 128, 8 fps, with its 16-kHz soundtrack, encoded to MP4 (H.264 +
AAC), plus the benchmark's annotation files. The sources (decoded MP3s, fluidsynth renders, espeak-ng speech)
are cached before timing, as they are after the first build on a machine. The script measures ``--n`` clips
(a few hundred) and extrapolates, labelled as such, to a build of a few thousand.

    .venv/bin/python benchmarks/bench_scenes.py [--n 200] [--builder ave-scenes] [--out benchmarks/results/scenes.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--builder", default="ave-scenes")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--target", type=int, default=3000, help="the build size to extrapolate to")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scenes.md"))
    args = ap.parse_args()

    from xmodal.data.registry import get_builder

    build = get_builder(args.builder).build
    tmp = Path(tempfile.mkdtemp(prefix="bench_scenes_"))
    try:
        build(tmp / "warm", n=10, seed=99, workers=1)  # imports and the source cache, outside the timing
        rows = []
        for w in args.workers:
            start = time.perf_counter()
            build(tmp / f"w{w}", n=args.n, seed=0, workers=w)
            seconds = time.perf_counter() - start
            rate = args.n / seconds
            size = sum(f.stat().st_size for f in (tmp / f"w{w}").rglob("*") if f.is_file())
            rows.append((w, seconds, rate, args.target / rate / 60, size / args.n / 1e3))
            print(f"{args.builder}: {args.n} clips, {w} process(es): {seconds:.1f} s, {rate:.2f} clips/s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [f"# Scene build rate ({args.builder})", "",
             (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the "
             "end (the machine was shared)."), "",
             f"| processes | {args.n} clips, measured | clips/s | {args.target} clips (extrapolated) | kB per clip |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {w} | {s:.1f} s | {r:.2f} | {m:.1f} min | {k:.0f} |" for w, s, r, m, k in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
