"""WER/CER vs jiwer 4 and VisDial ranks vs the challenge code's loop, side by side in one run.

    .venv/bin/python benchmarks/bench_speech_qa.py

Data: the emoji names the ``emoji`` package ships (about 4,000 real English phrases) with deterministic
ASR-like perturbations; VisDial: 2,000 rounds x 100 options of scores with ties. Prints seconds and ratios.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import jiwer  # noqa: E402
from test_qa_metrics import ref_scores_to_ranks  # noqa: E402  (the official loop, transcribed)
from test_speech_metrics import _perturb, _sentences  # noqa: E402

from xmodal.metrics.qa import visdial  # noqa: E402
from xmodal.metrics.speech import cer, wer  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    refs = _sentences()
    hyps = _perturb(refs, 0)
    print(f"{len(refs)} utterances, {sum(len(r.split()) for r in refs)} reference words")
    # Long utterances (like read speech: 150-800 characters): 12 consecutive phrases joined, then perturbed.
    long_refs = [" ".join(refs[i: i + 12]) for i in range(0, len(refs) - 11, 12)]
    long_hyps = [" ".join(hyps[i: i + 12]) for i in range(0, len(refs) - 11, 12)]
    for name, ours, theirs, r, h in [("WER", wer, jiwer.wer, refs, hyps), ("CER", cer, jiwer.cer, refs, hyps),
                                     ("WER long", wer, jiwer.wer, long_refs, long_hyps),
                                     ("CER long", cer, jiwer.cer, long_refs, long_hyps)]:
        assert abs(ours(r, h) - theirs(r, h)) < 1e-12
        a = best_of(lambda ours=ours, r=r, h=h: ours(r, h), 5)
        b = best_of(lambda theirs=theirs, r=r, h=h: theirs(r, h), 5)
        print(f"{name} ({len(r)} utterances): xmodal {a:.3f} s, jiwer {b:.3f} s, jiwer/xmodal = {b / a:.2f}x")

    rng = np.random.RandomState(0)
    scores = torch.from_numpy(rng.randint(0, 20, size=(200, 10, 100)).astype(np.float32))  # many ties
    gt = torch.from_numpy(rng.randint(0, 100, size=(200, 10)))
    ours_t = best_of(lambda: visdial(scores, gt), 3)
    t = time.perf_counter()
    ref_ranks = ref_scores_to_ranks(scores)
    ref_t = time.perf_counter() - t
    order = torch.sort(scores, dim=-1, descending=True).indices
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(100).expand_as(order)) + 1
    assert torch.equal(ranks, ref_ranks)
    print(f"VisDial 2,000 rounds: xmodal {ours_t:.4f} s (all metrics), reference scores_to_ranks loop {ref_t:.2f} s, "
          f"ratio {ref_t / ours_t:.0f}x")


if __name__ == "__main__":
    main()
