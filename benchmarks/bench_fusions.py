"""Fusions side by side on real media: ``xmodal train`` of one recipe (emoji glyphs beside emoji names, the
label needing both: the table of ``tests/test_fit.py``) with each fusion, the same data, split, epochs and seed.
Prints held-out accuracy, parameters and wall time per fusion; the question is whether the plan's default
(``concat``) should change.

    python benchmarks/bench_fusions.py [--rows 240] [--epochs 12] [--seeds 0 1] [--text]

``--text`` reads the names as text (word pieces through a one-layer transformer) instead of categories, so both
columns have many tokens for ``cross_attention`` to relate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
FUSIONS = {"concat": {"kind": "concat"}, "attention_pooled": {"kind": "attention_pooled", "width": 32, "heads": 2},
           "cross_attention": {"kind": "cross_attention", "width": 32, "heads": 2}}


def run(table: Path, fusion: dict, seed: int, epochs: int, out: Path, text: bool) -> dict:
    name = {"family": "transformer", "width": 32, "depth": 1, "heads": 2} if text else {"width": 16}
    recipe = {
        "task": "multimodal",
        "data": {"table": str(table), "fields": {"picture": "image", "name": "text" if text else "categorical"},
                 "target": "label", "val_fraction": 0.25, "image_size": [32, 32], "seed": seed},
        "model": {"encoders": {"picture": {"width": 32, "channels_last": True}, "name": name},
                  "fusion": fusion, "head": {"kind": "classifier"}},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 2e-3, "eval_every": 0, "progress": False, "seed": seed,
                  "tensorboard": False, "threads": 1, "checkpoint_every": 0},
    }
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(recipe))
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "xmodal", "train", str(path), "--out", str(out)], env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    doc = json.loads((out / "metrics.json").read_text())
    return {"accuracy": doc["model"]["accuracy"], "majority": doc["baselines"]["majority"]["accuracy"],
            "wall_s": round(wall, 1)}


def main() -> None:
    from test_fit import emoji_table

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--text", action="store_true", help="names as word-piece text, not categories")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = emoji_table(Path(tmp) / "data", rows=args.rows)
        print(f"load average {os.getloadavg()[0]:.1f}; {args.rows} rows, {args.epochs} epochs, names as "
              f"{'text' if args.text else 'categories'}")
        for seed in args.seeds:
            for name, fusion in FUSIONS.items():
                r = run(table, fusion, seed, args.epochs, Path(tmp) / f"{name}-{seed}", args.text)
                print(f"seed {seed}  {name:17s} accuracy {r['accuracy']:.3f}  majority {r['majority']:.3f}  "
                      f"wall {r['wall_s']:6.1f} s", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
