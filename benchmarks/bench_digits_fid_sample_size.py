"""The FID of a trained ``generative_digits`` run at the sample size of the real-data floor.

``metrics.json`` compares 1,000 samples (100 per class) with all 597 held-out digits, while its real floor
compares one half of the held-out digits (298) with the other (299). FID is biased upwards by few samples, so
the two are not on one scale. Here every row has about 300 against 298: the run's model (30 per class, from
several seeds), the per-pixel Gaussian baseline, and the other half of the real digits, each against the first
half.

    .venv/bin/python benchmarks/bench_digits_fid_sample_size.py RUN_DIR [--seeds 1234 1 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from xmodal.metrics.vision import fid_from_features
from xmodal.tasks import generative_digits as digits
from xmodal.tasks.runs import load_trained

PER_CLASS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[digits.EVAL_SEED, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)

    bundle, recipe, directory = load_trained(args.run, "best")
    model = bundle.model
    if not isinstance(model, (digits.DiffusionDigits, digits.CvaeDigits)):
        raise SystemExit(f"{args.run}: not a generative_digits run")
    n_train, seed = int(recipe["data"]["n_train"]), int(recipe["data"]["seed"])
    x, y, held, _ = digits.split_digits(n_train, seed)
    clf = digits.digit_classifier(n_train, seed)
    half = len(held) // 2
    first = digits.classifier_features(clf, held[:half])
    labels = torch.arange(digits.CLASSES).repeat_interleave(PER_CLASS)
    def row(name: str, x16: np.ndarray) -> None:
        print(f"{name:<44}{fid_from_features(first, digits.classifier_features(clf, x16)):7.2f}")

    print(f"{directory}: FID against the first {half} held-out digits")
    row(f"real held-out digits, the other {len(held) - half}", held[half:])
    for s in args.seeds:
        samples = model.sample(labels, digits.seeded(s))  # [-1, 1], as the task scores them: back to 0..16
        row(f"model, {len(labels)} samples, seed {s}", ((samples.clamp(-1, 1) + 1) * 8).double().numpy())
    rng = np.random.default_rng(digits.EVAL_SEED)
    pixel = np.concatenate([rng.normal(x[y == c].mean(0), x[y == c].std(0), size=(PER_CLASS, 64)).clip(0, 16)
                            for c in range(digits.CLASSES)])
    row(f"per-pixel Gaussian, {len(pixel)} samples, seed {digits.EVAL_SEED}", pixel)


if __name__ == "__main__":
    main()
