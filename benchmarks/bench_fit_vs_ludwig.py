"""``xmodal fit`` against Ludwig's ``ludwig experiment`` on the same table and the same CPU time budget, both
from scratch, side by side in one run: held-out accuracy and wall time.

The data: emoji glyphs (Noto Color Emoji) beside the names of other emoji; the label is both groups, so each
column alone gets at most half of it (the table of ``tests/test_fit.py``). Ludwig is used when it imports from
``--ludwig-python`` (a separate virtual environment: ``ludwig.experiment``, which ``ludwig experiment``
imports, must import); where it cannot, the comparison is a hand-written late
fusion on the same held-out split: one scikit-learn logistic regression per column (the picture's pixels, the
name one-hot) whose class log-probabilities are summed, trained under the same wall-time budget measurement.

    python benchmarks/bench_fit_vs_ludwig.py --rows 600 --budget 120 [--ludwig-python /tmp/ludwig-venv/bin/python]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def run_fit(table: Path, budget: float, out: Path) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "xmodal", "fit", str(table), "--target", "label", "--time-budget",
                           str(budget), "--out", str(out)], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    doc = json.loads((out / "metrics.json").read_text())
    return {"wall_s": wall, "accuracy": doc["model"]["accuracy"], "baselines": doc["baselines"], "n": doc["n"]}


def late_fusion(table: Path, seed: int = 0) -> dict:
    """Per-column logistic regressions, log-probabilities summed (late fusion), on the pipeline's split."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    from xmodal.tasks.sources import _split_rows

    t = time.perf_counter()
    with open(table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    train, val = _split_rows(rows, "label", 0.2, seed, True)  # the same split as xmodal fit's (seed 0)

    def pixels(rs: list[dict]) -> np.ndarray:
        return np.stack([np.asarray(Image.open(table.parent / r["picture"]).convert("RGB"), np.float32).ravel() / 255
                         for r in rs])

    names = OneHotEncoder(handle_unknown="ignore").fit([[r["name"]] for r in train])
    y_train, y_val = [r["label"] for r in train], [r["label"] for r in val]
    picture = LogisticRegression(max_iter=500).fit(pixels(train), y_train)
    name = LogisticRegression(max_iter=500).fit(names.transform([[r["name"]] for r in train]), y_train)
    assert list(picture.classes_) == list(name.classes_)
    scores = (picture.predict_log_proba(pixels(val))
              + name.predict_log_proba(names.transform([[r["name"]] for r in val])))
    pred = picture.classes_[scores.argmax(1)]
    return {"wall_s": time.perf_counter() - t, "accuracy": float(np.mean(pred == np.array(y_val))), "n": len(val)}


def ludwig_available(python: str | None) -> tuple[bool, str]:
    if not python:
        return False, "no --ludwig-python given"
    proc = subprocess.run([python, "-c", "import ludwig, torch; from ludwig import experiment; print(ludwig.__version__, torch.__version__)"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()[-2000:]


def run_ludwig(python: str, table: Path, budget: float, out: Path) -> dict:
    """``ludwig experiment`` with a time budget (``trainer.max_time`` hours-free: ``max_epochs`` large and
    Ludwig's own early stopping), image + category inputs, category output."""
    import yaml

    config = {"input_features": [{"name": "picture", "type": "image"}, {"name": "name", "type": "category"}],
              "output_features": [{"name": "label", "type": "category"}],
              "trainer": {"epochs": 1000, "early_stop": 5},
              "preprocessing": {"split": {"type": "stratify", "column": "label", "probabilities": [0.8, 0.0, 0.2]}}}
    cfg = out / "ludwig.yaml"
    out.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(config))
    ludwig = str(Path(python).with_name("ludwig"))
    t = time.perf_counter()
    proc = subprocess.run(["timeout", str(int(budget)), ludwig, "experiment", "--dataset", str(table), "--config",
                           str(cfg), "--output_directory", str(out)], capture_output=True, text=True, check=False,
                          cwd=table.parent)
    wall = time.perf_counter() - t
    stats = sorted(out.glob("**/test_statistics.json"))
    acc = json.loads(stats[-1].read_text())["label"]["accuracy"] if stats else None
    return {"wall_s": wall, "accuracy": acc, "rc": proc.returncode, "tail": proc.stderr[-1500:]}


def main() -> None:
    from test_fit import emoji_table

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--ludwig-python", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = emoji_table(root / "data", rows=args.rows)
        fit = run_fit(table, args.budget, root / "fit")
        ok, why = ludwig_available(args.ludwig_python)
        other = run_ludwig(args.ludwig_python, table, args.budget, root / "ludwig") if ok else late_fusion(table)
        name = "ludwig experiment" if ok else "late fusion (sklearn logistic regressions)"
        print(json.dumps({"rows": args.rows, "budget_s": args.budget, "xmodal fit": fit, name: other,
                          "ludwig": why}, indent=1))


if __name__ == "__main__":
    main()
