"""BLEU + ROUGE-L + CIDEr-D with tokenization on 5,000 images x 5 references: xmodal vs pycocoevalcap.

Captions are real human-written English sentences: the sentences of the docstrings of the Python standard
library, numpy and scipy (5 to 20 words, like COCO captions; about 30,000 distinct). Image i gets 5 of them as references and a sixth as the
candidate. pycocoevalcap runs its Java PTBTokenizer, then Bleu, Rouge and Cider; xmodal runs
``evaluate(..., metrics=["bleu", "rouge_l", "cider_d"])`` on the raw strings. Run:

    .venv/bin/python benchmarks/bench_captions.py [--images 5000]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import random
import re
import time


def real_sentences() -> list[str]:
    out = []
    for name in ["os", "re", "json", "argparse", "collections", "itertools", "functools", "pathlib", "subprocess",
                 "logging", "unittest", "typing", "datetime", "decimal", "statistics", "random", "string",
                 "shutil", "tarfile", "zipfile", "csv", "sqlite3", "asyncio", "threading", "socket", "inspect",
                 "ast", "pickle", "heapq", "calendar", "codecs", "io", "tempfile", "difflib", "enum", "math",
                 "email", "http.client", "urllib.parse", "xml.dom.minidom", "textwrap", "contextlib", "abc",
                 "numpy", "numpy.linalg", "numpy.random", "numpy.fft", "numpy.ma", "scipy.signal", "scipy.stats",
                 "scipy.optimize", "scipy.sparse", "scipy.ndimage", "scipy.linalg", "scipy.spatial"]:
        mod = importlib.import_module(name)
        for _, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj)
            if doc:
                for para in doc.split("\n\n"):
                    for sent in re.split(r"(?<=[a-z]\.)\s", " ".join(para.split())):
                        if 5 <= len(sent.split()) <= 20 and sent[0].isupper() and ">>>" not in sent:
                            out.append(sent)
    return sorted(set(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--refs", type=int, default=5)
    args = ap.parse_args()
    pool = real_sentences()
    rng = random.Random(0)
    refs, cands = {}, {}
    for i in range(args.images):
        picks = rng.sample(pool, args.refs + 1)
        refs[i], cands[i] = picks[1:], picks[0]
    print(f"{args.images} images x {args.refs} refs from {len(pool)} distinct real sentences")

    from xmodal.metrics.captions import evaluate

    t0 = time.perf_counter()
    ours = evaluate(refs, cands, metrics=["bleu", "rouge_l", "cider_d"])
    t_ours = time.perf_counter() - t0

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    t0 = time.perf_counter()
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": cands[k]}] for k in refs})
    t_tok = time.perf_counter() - t0
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    t_b = time.perf_counter() - t0 - t_tok
    r, _ = Rouge().compute_score(gts, res)
    t_r = time.perf_counter() - t0 - t_tok - t_b
    c, _ = Cider().compute_score(gts, res)
    t_ref = time.perf_counter() - t0
    ref = {**{f"BLEU-{k + 1}": b[k] for k in range(4)}, "ROUGE-L": r, "CIDEr-D": c}
    diff = max(abs(ours[k] - ref[k]) for k in ref)
    print(f"pycocoevalcap: {t_ref:.2f} s (Java tokenizer {t_tok:.2f} s, BLEU {t_b:.2f} s, ROUGE-L {t_r:.2f} s, "
          f"CIDEr-D {t_ref - t_tok - t_b - t_r:.2f} s)")
    print(f"xmodal:        {t_ours:.2f} s")
    print(f"speed-up:      {t_ref / t_ours:.1f}x   max |difference| over the 6 scores: {diff:.2e}")
    for k in ref:
        print(f"  {k:8s} ours {ours[k]:.6f}  pycocoevalcap {ref[k]:.6f}")


if __name__ == "__main__":
    main()
