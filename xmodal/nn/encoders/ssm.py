"""Selective state-space model (Mamba's S6 block, Gu & Dao 2023) in pure PyTorch, for long sequences.

The recurrence, per channel ``d`` and state ``n`` (A diagonal, negative):
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t,      y_t = C_t . h_t + D * x_t
where ``dt``, ``B`` and ``C`` depend on the input (the "selective" part). Two scans compute it:
``selective_scan_sequential`` (the reference, one step at a time) and ``selective_scan_chunked`` (chunks of the
sequence scanned side by side, then the states carried between chunks: about 3 sqrt(t) vectorised steps
instead of t, with the same arithmetic). Padding (mask False) sets dt = 0 and x = 0 there, so the state passes through unchanged
and padded steps never reach a valid output; with right padding the causal conv cannot leak either.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError


def selective_scan_sequential(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Reference scan. x, dt: ``(b, t, d)``; A: ``(d, n)``; B, C: ``(b, t, n)``; D: ``(d,)`` -> y ``(b, t, d)``."""
    b, t, d = x.shape
    h = x.new_zeros(b, d, A.shape[1])
    ys = []
    for i in range(t):
        decay = torch.exp(dt[:, i, :, None] * A)  # (b, d, n)
        h = decay * h + (dt[:, i, :, None] * x[:, i, :, None]) * B[:, i, None, :]
        ys.append((h * C[:, i, None, :]).sum(-1))
    return torch.stack(ys, dim=1) + x * D


def _scan_steps(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    h: torch.Tensor,
    C: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run the recurrence over axis 2 of ``(b, chunks, L, ...)`` inputs, all chunks at once, from states ``h``
    ``(b, chunks, d, n)``. Returns the last states, the product of the decays, and the outputs when ``C`` is given."""
    decay = torch.ones_like(h)
    ys = []
    for i in range(x.shape[2]):
        a = torch.exp(dt[:, :, i, :, None] * A)  # (b, chunks, d, n)
        h = a * h + (dt[:, :, i] * x[:, :, i])[..., None] * B[:, :, i, None, :]
        decay = decay * a
        if C is not None:
            ys.append((h * C[:, :, i, None, :]).sum(-1))  # (b, chunks, d)
    return h, decay, (torch.stack(ys, dim=2) if C is not None else None)


def selective_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    chunk: int | None = None,
) -> torch.Tensor:
    """The same scan in ``2 * chunk + t / chunk`` vectorised steps instead of ``t`` (``chunk`` defaults to
    sqrt(t)): the sequence is cut into chunks that run side by side. Pass 1 scans every chunk from a zero state
    (its end state and total decay); pass 2 carries the true state from chunk to chunk,
    ``h_in[c+1] = decay[c] * h_in[c] + end[c]``; pass 3 rescans every chunk from its true entering state and
    emits the outputs. Same arithmetic as the reference, so it agrees to rounding; memory stays O(b d n) per chunk.
    Zero padding at the end (dt = 0: decay 1, no input) leaves the states unchanged."""
    b, t, d = x.shape
    L = chunk or max(1, math.isqrt(t))
    nc = -(-t // L)
    pad = nc * L - t

    def split(v: torch.Tensor) -> torch.Tensor:  # (b, t, k) -> (b, chunks, L, k)
        return F.pad(v, (0, 0, 0, pad)).view(b, nc, L, v.shape[-1])

    xs, dts, Bs, Cs = split(x), split(dt), split(B), split(C)
    zero = x.new_zeros(b, nc, d, A.shape[1])
    end, decay, _ = _scan_steps(xs, dts, A, Bs, zero)  # pass 1
    entering = [x.new_zeros(b, d, A.shape[1])]
    for c in range(nc - 1):  # pass 2
        entering.append(decay[:, c] * entering[-1] + end[:, c])
    _, _, y = _scan_steps(xs, dts, A, Bs, torch.stack(entering, dim=1), Cs)  # pass 3
    assert y is not None  # C was given
    return y.reshape(b, nc * L, d)[:, :t] + x * D


class SelectiveSSM(nn.Module):
    """One Mamba block: in-projection to ``(x, z)``, causal depthwise conv and SiLU on x, input-dependent
    ``dt`` (low rank, softplus), ``B`` and ``C``, the selective scan, gating by ``silu(z)``, out-projection.
    ``(batch, time, dim)`` and mask ``(batch, time)`` -> ``(batch, time, dim)``; padded steps are zero."""

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        chunk: int | None = None,
    ) -> None:
        super().__init__()
        inner = expand * dim
        self.dt_rank = dt_rank or math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)  # causal after trimming
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        # Mamba's initialisation: dt = softplus(bias) log-uniform in [dt_min, dt_max]; A = -(1..n) per channel.
        dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1)
        )
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self.d_state, self.chunk = d_state, chunk
        self.sequential = False  # True selects the reference scan (tests, debugging)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = x.shape[1]
        valid = None if mask is None else mask.to(x.dtype)[..., None]  # (b, t, 1)
        xz = self.in_proj(x)
        xs, z = xz.chunk(2, dim=-1)  # (b, t, inner) each
        if valid is not None:
            xs = xs * valid
        xs = F.silu(self.conv(xs.transpose(1, 2))[..., :t].transpose(1, 2))
        dt_low, Bm, Cm = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_low))  # (b, t, inner)
        if valid is not None:
            dt, xs = dt * valid, xs * valid  # a padded step neither decays nor feeds the state
        A = -torch.exp(self.A_log.float())  # (inner, n)
        scan = selective_scan_sequential if self.sequential else selective_scan_chunked
        kwargs = {} if self.sequential else {"chunk": self.chunk}
        y = scan(xs, dt, A, Bm, Cm, self.D, **kwargs)
        y = self.out_proj(y * F.silu(z))
        return y if valid is None else y * valid


class SSMEncoder(nn.Module):
    """Residual stack of pre-norm :class:`SelectiveSSM` blocks on ``(batch, time, in_dim)`` with a mask;
    ``forward_all`` -> ``(sequence (batch, time, dim), pooled (batch, out_dim))`` (masked mean)."""

    def __init__(
        self,
        in_dim: int,
        dim: int = 128,
        depth: int = 2,
        d_state: int = 16,
        expand: int = 2,
        chunk: int | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(depth))
        self.blocks = nn.ModuleList(SelectiveSSM(dim, d_state, expand, chunk=chunk) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Identity() if out_dim is None else nn.Linear(dim, out_dim)
        self.in_dim, self.out_dim = in_dim, dim if out_dim is None else out_dim

    def forward_all(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ShapeError(
                f"expected (batch, time, {self.in_dim}), got {tuple(x.shape)}", source="SSMEncoder"
            )
        h = self.input(x)
        for norm, block in zip(self.norms, self.blocks):
            h = h + block(norm(h), mask)
        h = self.norm(h)
        w = torch.ones_like(h[..., :1]) if mask is None else mask.to(h.dtype)[..., None]
        h = h * w
        return h, self.proj(h.sum(1) / w.sum(1).clamp_min(1.0))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(x, mask)[1]
