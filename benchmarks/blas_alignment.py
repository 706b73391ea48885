"""Does a CPU kernel give other bits for the same values when its operand starts at another address?

    .venv/bin/python benchmarks/blas_alignment.py

For each operation, the operand is copied to ``k`` float32s past a 64-byte boundary (k = 0..15) and the result is
compared bit for bit with the aligned one, on one thread. The offsets that change the bits are printed. On
torch 2.13 with MKL 2024.2 (AMD EPYC, AVX-512): matrix-vector products (``mv``, ``addmv``, a one-row ``linear``)
differ whenever the matrix is not 16-byte aligned and ``dot`` at some 8-byte offsets; matrix products and the
elementwise and reduction kernels that AdamW, clipping and the losses use do not. torch's allocator aligns to
64 bytes, so only views at an offset (a safetensors file's tensors, slices) can meet the sensitive paths.
Setting MKL's conditional numerical reproducibility (``MKL_CBWR=AUTO,STRICT``, or ``COMPATIBLE`` / ``AVX2``)
before torch starts removed the dependence in every case here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def off_boundary(t: torch.Tensor, floats: int) -> torch.Tensor:
    buf = torch.empty(t.numel() + 16)
    assert buf.data_ptr() % 64 == 0
    view = buf[floats : floats + t.numel()].view(t.shape)
    view.copy_(t)
    return view


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m, v, w = torch.randn(32, 32), torch.randn(32), torch.randn(32, 24)
    x, y = torch.randn(1000), torch.rand(1000) + 0.1
    # (name, function of the operand that is moved, the operand)
    cases: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = [
        ("mm (32x32 @ 32x24)", lambda a: a @ w, m),
        ("linear (batch 32)", lambda a: torch.nn.functional.linear(a, w.t().contiguous()), m),
        ("mv (32x32 @ 32)", lambda a: a @ v, m),
        ("addmv", lambda a: torch.addmv(v, a, v), m),
        ("linear (one row)", lambda a: torch.nn.functional.linear(v[None], a), m),
        ("dot (32)", lambda a: a.dot(a), v),
        ("sum", lambda a: a.sum(), x),
        ("norm", lambda a: torch.linalg.vector_norm(a), x),
        ("softmax", lambda a: torch.softmax(a, 0), x),
        ("addcdiv (AdamW's update)", lambda a: a.addcdiv(a, y.sqrt().add(1e-8), value=-0.01), x),
        ("lerp (AdamW's first moment)", lambda a: a.lerp(y, 0.1), x),
    ]
    print(f"torch {torch.__version__}, MKL {torch.backends.mkl.is_available()}, one thread")
    for name, fn, operand in cases:
        ref = fn(operand)
        bad = [k for k in range(16) if not same_bits(fn(off_boundary(operand, k)), ref)]
        print(f"{name:30s} offsets (float32s past 64 B) with other bits: {bad if bad else 'none'}")


if __name__ == "__main__":
    main()
