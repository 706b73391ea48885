"""Structureness indicator: xmodal's vectorised fitness scape plot vs the reference's quadratic algorithm.

Real audio: Bach chorales from music21's corpus, rendered with fluidsynth and joined to two minutes
(N = 240 frames at 2 Hz). The reference algorithm (MusDr / Mueller ``compute_fitness_scape_plot``, transcribed
in tests/test_music_metrics.py::ref_scape_plot) takes many minutes at N = 240, so it is timed once on a
shorter piece (default 36 s, N = 72) and extrapolated by the number of DP cells it visits,
N * sum_L (N - L + 1)(L + 1), which grows as N^4 / 6. Ours (the numba kernel, compiled or loaded from numba's cache
before the timings, as librosa's kernels are) is timed on both lengths, and its plot on the short piece is
checked equal to the reference's; with --ref-seconds equal to --seconds nothing is extrapolated.

    .venv/bin/python benchmarks/bench_music.py [--seconds 120] [--ref-seconds 36]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SR = 22050
SF2 = "/usr/share/sounds/sf2/TimGM6mb.sf2"
PIECES = ["bach/bwv66.6", "bach/bwv10.7", "bach/bwv101.7", "bach/bwv103.6", "bach/bwv104.6"]


def reference_scape_plot():
    spec = importlib.util.spec_from_file_location(
        "test_music_metrics", ROOT / "tests" / "test_music_metrics.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ref_scape_plot


def render_pieces(seconds: float) -> np.ndarray:
    import music21
    import soundfile as sf

    parts, total = [], 0
    with tempfile.TemporaryDirectory() as d:
        for name in PIECES:
            mid, wav = Path(d) / "x.mid", Path(d) / "x.wav"
            music21.corpus.parse(name).write("midi", fp=str(mid))
            subprocess.run(
                ["fluidsynth", "-ni", "-q", "-r", str(SR), "-F", str(wav), SF2, str(mid)], check=True
            )
            x, _ = sf.read(wav, dtype="float32")
            parts.append(x.mean(axis=1))
            total += len(parts[-1])
            if total >= seconds * SR:
                break
    return np.concatenate(parts)[: int(seconds * SR)]


def timed(fn, *args):
    """Result, wall seconds, CPU seconds of this process (robust when other jobs share the cores)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def dp_cells(n: int) -> int:
    return n * sum((n - length + 1) * (length + 1) for length in range(1, n + 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--ref-seconds", type=float, default=36.0)
    args = ap.parse_args()
    if shutil.which("fluidsynth") is None or not Path(SF2).is_file():
        sys.exit("needs fluidsynth and timgm6mb-soundfont")
    sys.path.insert(0, str(ROOT))
    from xmodal.metrics.music import structure as st

    audio = render_pieces(args.seconds)
    st.chroma_features(audio[: SR * 5])  # librosa's numba JIT, once, outside the timings
    w0 = time.perf_counter()
    st.fitness_scape_plot(np.eye(4))  # our numba kernel likewise: compiled once per machine, then loaded
    print(
        f"scape-plot kernel compile or cache load (once per process, outside the timings): "
        f"{time.perf_counter() - w0:.2f} s"
    )

    t0 = time.perf_counter()
    ssm = st.self_similarity(st.chroma_features(audio))
    t_ssm = time.perf_counter() - t0
    plot, t_ours, c_ours = timed(st.fitness_scape_plot, ssm)
    n = ssm.shape[0]
    si = [st.structure_indicator(plot, lo, hi) for lo, hi in [(3, 8), (8, 15), (15, 128)]]

    short = audio[: int(args.ref_seconds * SR)]
    ssm_s = st.self_similarity(st.chroma_features(short))
    ns = ssm_s.shape[0]
    plot_s, t_ours_s, c_ours_s = timed(st.fitness_scape_plot, ssm_s)
    plot_np, t_np_s, c_np_s = timed(lambda x: st.fitness_scape_plot(x, method="numpy"), ssm_s)
    plot_ref, t_ref_s, c_ref_s = timed(reference_scape_plot(), ssm_s)
    diff = float(np.max(np.abs(plot_ref - plot_s)))
    scale = dp_cells(n) / dp_cells(ns)

    print(f"audio: {len(audio) / SR:.0f} s of rendered Bach chorales, N = {n} frames at 2 Hz")
    print(f"SSM (chroma, 7 tempi x 12 shifts, threshold): {t_ssm:.2f} s")
    print(f"SI(3,8), SI(8,15), SI(15,128) = {si[0]:.4f}, {si[1]:.4f}, {si[2]:.4f}")
    print(
        f"short piece N = {ns}: reference {t_ref_s:.2f} s wall / {c_ref_s:.2f} s CPU, ours {t_ours_s:.3f} s "
        f"wall / {c_ours_s:.3f} s CPU; ratio {t_ref_s / t_ours_s:.0f}x wall, {c_ref_s / c_ours_s:.0f}x CPU; "
        f"max |diff| {diff:.1e}"
    )
    print(
        f"numpy route (method='numpy') on the short piece: {t_np_s:.3f} s wall / {c_np_s:.3f} s CPU, "
        f"{t_ref_s / t_np_s:.0f}x wall; equal to the kernel's plot: {np.array_equal(plot_np, plot_s)}"
    )
    print(
        f"two minutes N = {n}: ours {t_ours:.2f} s wall / {c_ours:.2f} s CPU; reference extrapolated by DP "
        f"cells (x{scale:.1f}): {t_ref_s * scale:.0f} s wall / {c_ref_s * scale:.0f} s CPU; ratio "
        f"{t_ref_s * scale / t_ours:.0f}x wall, {c_ref_s * scale / c_ours:.0f}x CPU"
    )


if __name__ == "__main__":
    main()
