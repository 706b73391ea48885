"""Recurrent encoders (BiLSTM, BiGRU) for sequences with padding: ``pack_padded_sequence`` makes the recurrence
stop at each sequence's true end, so padding never reaches a valid step or the pooled vector."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xmodal.errors import ShapeError


class RNNEncoder(nn.Module):
    """Bidirectional LSTM or GRU on ``(batch, time, in_dim)`` with a ``(batch, time)`` mask (True = valid, padding
    at the end).

    ``forward`` returns ``(features (batch, time, 2*hidden), pooled (batch, out_dim))``; padded steps of
    ``features`` are zero. ``pool="last"`` concatenates the forward direction's state at the last valid step and
    the backward direction's state at step 0 (the final hidden states); ``"mean"`` is the masked mean.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        num_layers: int = 1,
        cell: Literal["lstm", "gru"] = "lstm",
        pool: Literal["last", "mean"] = "last",
        dropout: float = 0.0,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(
            in_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.pool_mode = pool
        self.proj = nn.Identity() if out_dim is None else nn.Linear(2 * hidden, out_dim)
        self.out_dim = 2 * hidden if out_dim is None else out_dim
        self.in_dim = in_dim

    def forward_all(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step features ``(batch, time, 2*hidden)`` and the pooled vector ``(batch, out_dim)``."""
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ShapeError(
                f"expected (batch, time, {self.in_dim}), got {tuple(x.shape)}", source="RNNEncoder"
            )
        b, t, _ = x.shape
        lengths = torch.full((b,), t, dtype=torch.long) if mask is None else mask.sum(1).long().cpu()
        if bool((lengths == 0).any()):
            raise ShapeError("a sequence has no valid step", source="mask")
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        feats, _ = pad_packed_sequence(out, batch_first=True, total_length=t)  # zeros after each length
        if self.pool_mode == "last":
            h = state[0] if isinstance(state, tuple) else state  # (layers * 2, batch, hidden)
            pooled = torch.cat([h[-2], h[-1]], dim=-1)  # last layer: forward end, backward start
        else:
            w = (torch.arange(t)[None, :] < lengths[:, None]).to(feats.dtype).to(feats.device)[..., None]
            pooled = (feats * w).sum(1) / w.sum(1)
        return feats, self.proj(pooled)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(x, mask)[1]


class BiLSTM(RNNEncoder):
    """Bidirectional LSTM encoder (see :class:`RNNEncoder`)."""

    def __init__(self, in_dim: int, hidden: int = 128, **kwargs) -> None:
        super().__init__(in_dim, hidden, cell="lstm", **kwargs)


class BiGRU(RNNEncoder):
    """Bidirectional GRU encoder (see :class:`RNNEncoder`)."""

    def __init__(self, in_dim: int, hidden: int = 128, **kwargs) -> None:
        super().__init__(in_dim, hidden, cell="gru", **kwargs)
