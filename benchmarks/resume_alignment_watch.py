"""Run ``xmodal train`` and count the aten calls whose CPU tensor inputs do not start on a 64-byte boundary.

    .venv/bin/python benchmarks/resume_alignment_watch.py train recipes/synthetic_pairs.yaml --out DIR --resume ...

Watching starts at the second optimizer step of the process (on resume, the first is the zero-learning-rate step
that torch's state-dict API takes to create the optimizer state), covers forward, backward and the optimizer
until the process ends, and prints the count and the most frequent (op, address % 64, shape) at exit. Run it on
a resumed life to see whether restored state reaches a kernel off alignment (``benchmarks/blas_alignment.py``
lists the kernels whose rounding depends on it).
"""

from __future__ import annotations

import atexit
import collections
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

off: collections.Counter[tuple[str, int, tuple[int, ...]]] = collections.Counter()
seen = collections.Counter[str]()


class Watch(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        for a in [*args, *kwargs.values()]:
            for t in a if isinstance(a, (list, tuple)) else [a]:
                if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel() > 1:
                    seen["inputs"] += 1
                    if t.data_ptr() % 64:
                        off[(str(func), t.data_ptr() % 64, tuple(t.shape))] += 1
        return func(*args, **kwargs)


_mode = Watch()
_steps = [0]


def _pre_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    _steps[0] += 1
    if _steps[0] == 2:
        _mode.__enter__()


def _report() -> None:
    print(f"tensor inputs watched: {seen['inputs']}; off a 64-byte boundary: {sum(off.values())}")
    for (op, rest, shape), n in off.most_common(20):
        print(f"  {n} x {op} address % 64 = {rest} shape {shape}")


if __name__ == "__main__":
    register_optimizer_step_pre_hook(_pre_step)
    atexit.register(_report)
    import sys

    from xmodal.cli import main

    sys.argv = ["xmodal", *sys.argv[1:]]
    main()
