"""Cost of exact contrastive gradient accumulation (GradCache) against a plain full-batch step and naive
accumulation, and the time to write / read an atomic safetensors+JSON checkpoint.

    .venv/bin/python benchmarks/bench_train_accum.py [--batch 256] [--micro 4] [--repeat 20]

GradCache does one extra forward per micro-batch (the no-grad caching pass), so expect about 1 + forward/(forward
+ backward) ~ 1.3-1.5x the full-batch step time, in exchange for holding only one micro-batch's activations.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xmodal.tasks import synthetic_pairs
from xmodal.train import checkpoint as ckpt
from xmodal.train.loop import accumulate_gradcache, accumulate_naive, split_batch


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args()

    torch.manual_seed(0)
    cfg = {"data": {"n_train": args.batch, "n_val": 8, "dim_a": 256, "dim_b": 256},
           "model": {"hidden": args.hidden, "layers": 3, "embed_dim": 128}}
    bundle = synthetic_pairs.build(cfg)
    batch = bundle.collate([bundle.train_set[i] for i in range(args.batch)])
    micro = split_batch(batch, args.batch, args.micro)
    model = bundle.model

    def full() -> None:
        bundle.loss(model(batch), batch).backward()
        model.zero_grad()

    def gradcache() -> None:
        accumulate_gradcache(model, bundle.loss, micro, batch)
        model.zero_grad()

    def naive() -> None:
        accumulate_naive(model, bundle.loss, micro)
        model.zero_grad()

    t_full, t_gc, t_naive = (timed(f, args.repeat) for f in (full, gradcache, naive))
    print(f"threads={torch.get_num_threads()} batch={args.batch} micro-batches={args.micro} "
          f"params={sum(p.numel() for p in model.parameters()) / 1e6:.2f}M")
    print(f"full batch step     {t_full * 1e3:8.1f} ms   1.00x   (the exact gradient)")
    print(f"GradCache x{args.micro}        {t_gc * 1e3:8.1f} ms   {t_gc / t_full:.2f}x   (exact, 1/{args.micro} of the activations)")
    print(f"naive accumulation  {t_naive * 1e3:8.1f} ms   {t_naive / t_full:.2f}x   (a different, within-micro-batch objective)")

    opt = torch.optim.AdamW(model.parameters())
    full()
    bundle.loss(model(batch), batch).backward()
    opt.step()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        step = iter(range(1, 10**6))

        def save() -> None:
            tensors, optim_json = ckpt.gather_state(model, opt)
            ckpt.write_checkpoint(root, next(step), tensors, {"optimizer": optim_json, "rng": [ckpt.rng_state()]}, 2)

        t_save = timed(save, 5)
        latest = ckpt.find_latest(root)
        size = (latest / ckpt.TENSORS).stat().st_size
        t_load = timed(lambda: ckpt.restore_state(model, opt, *_load(latest)), 5)
        t_torch = timed(lambda: torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, root / "ref.pt"), 5)
    print(f"checkpoint write    {t_save * 1e3:8.1f} ms   ({size / 1e6:.1f} MB, fsync'd, atomic)  "
          f"torch.save (pickle, no fsync) {t_torch * 1e3:.1f} ms = {t_save / t_torch:.2f}x")
    print(f"checkpoint restore  {t_load * 1e3:8.1f} ms")


def _load(path: Path):
    tensors, state = ckpt.read_checkpoint(path)
    return tensors, state["optimizer"]


if __name__ == "__main__":
    main()
