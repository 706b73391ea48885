"""Class-conditional diffusion with classifier-free guidance on sklearn's real 8x8 digits, scored by a classifier
trained on real digits: the accuracy of the classifier on samples of each requested class (chance = 10%),
and the Frechet distance on the classifier's hidden features against a per-pixel Gaussian baseline.

    .venv/bin/python benchmarks/bench_generative_digits.py [--steps 12000] [--per-class 100]

A hand loop over the denoiser of ``recipes/generative_digits.yaml`` (``xmodal train`` of that recipe is the same
model with the trainer's step, an EMA and the evaluation built in).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier

from xmodal.generative.diffusion import GaussianDiffusion, get_named_beta_schedule
from xmodal.generative.guidance import ClassifierFreeGuidance
from xmodal.metrics.vision import fid_from_features
from xmodal.tasks.generative_digits import ConditionalMLP, classifier_features


def features(clf: MLPClassifier, x01: np.ndarray) -> np.ndarray:
    """The classifier's hidden layer (ReLU) on digits in sklearn's 0..16 scale (the task's FID features)."""
    return classifier_features(clf, x01)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average {os.getloadavg()}")

    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.data))
    train_idx, test_idx = order[:1200], order[1200:]
    x_all, y_all = digits.data.astype(np.float64), digits.target
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=0)
    clf.fit(x_all[train_idx], y_all[train_idx])
    print(f"classifier accuracy on held-out real digits: {clf.score(x_all[test_idx], y_all[test_idx]):.3f}")

    torch.manual_seed(0)
    x = torch.tensor(x_all[train_idx] / 8.0 - 1.0, dtype=torch.float32)  # [-1, 1]
    y = torch.tensor(y_all[train_idx])
    diffusion = GaussianDiffusion(get_named_beta_schedule("linear", 1000))
    cfg = ClassifierFreeGuidance(ConditionalMLP(), num_classes=10, p_uncond=0.1)
    opt = torch.optim.Adam(cfg.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    cfg.train()
    for _ in range(args.steps):
        idx = torch.randint(0, len(x), (256,), generator=gen)
        t = torch.randint(0, 1000, (256,), generator=gen)
        loss = diffusion.training_losses(cfg, x[idx], t, model_kwargs={"cond": y[idx]})["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    print(f"trained {args.steps} steps of batch 256 in {time.perf_counter() - start:.1f} s (final loss "
          f"{loss.item():.4f})")
    cfg.eval()

    labels = torch.arange(10).repeat_interleave(args.per_class)
    real_feats = features(clf, x_all[test_idx])
    # baseline: per-pixel independent Gaussian of each class (mean and std of the training digits)
    base = []
    for c in range(10):
        xc = x_all[train_idx][y_all[train_idx] == c]
        base.append(rng.normal(xc.mean(0), xc.std(0), size=(args.per_class, 64)).clip(0, 16))
    base = np.concatenate(base)
    print(f"\n{'samples':28s} {'class acc':>9s} {'FID (clf features)':>19s}")
    print(f"{'per-pixel Gaussian baseline':28s} {np.mean(clf.predict(base) == labels.numpy()):9.3f} "
          f"{fid_from_features(real_feats, features(clf, base)):19.2f}")
    for scale in (1.0, 2.0, 3.0):
        samples = diffusion.ddim_sample_loop(cfg.guided(scale), (len(labels), 64), num_steps=50,
                                             model_kwargs={"cond": labels},
                                             generator=torch.Generator().manual_seed(1)).float()
        x16 = ((samples.clamp(-1, 1) + 1.0) * 8.0).numpy().astype(np.float64)
        acc = np.mean(clf.predict(x16) == labels.numpy())
        fid = fid_from_features(real_feats, features(clf, x16))
        print(f"{f'diffusion, guidance {scale:.0f}, DDIM-50':28s} {acc:9.3f} {fid:19.2f}")
    print(f"{'real held-out digits':28s} {clf.score(x_all[test_idx], y_all[test_idx]):9.3f} "
          f"{fid_from_features(real_feats[: len(real_feats) // 2], real_feats[len(real_feats) // 2:]):19.2f}"
          "  (half vs half: the noise floor)")


if __name__ == "__main__":
    main()
