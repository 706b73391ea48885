"""Token sequences beside pooled vectors: what an encoder returns with ``return_tokens=True``.

Every encoder that :func:`xmodal.models.build_encoder` builds takes ``forward(x, mask=None, return_tokens=False)``.
By default it returns the pooled vector ``(batch, out_dim)``, as always; with ``return_tokens=True`` it returns an
:class:`EncoderTokens`: that pooled vector, the positions it was pooled from as tokens ``(batch, L, out_dim)``
(a CNN's spatial / temporal positions, a transformer's or a recurrent net's steps, a set's points, a graph's
nodes; a table column or a sentence embedding is one token) and their mask ``(batch, L)`` (True = valid). The
tokens are taken after the encoder's output projection, so they live in the pooled vector's space. Token-level
fusions (``fusion: {kind: cross_attention}``) consume them; everything else keeps receiving the pooled vector.
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import torch
from torch import nn


class EncoderTokens(NamedTuple):
    """An encoder's pooled vector ``(batch, out_dim)``, its tokens ``(batch, L, out_dim)`` and their mask
    ``(batch, L)`` (bool, True = valid)."""

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor


def gives_tokens(encoder: nn.Module) -> bool:
    """Whether ``encoder.forward`` takes ``return_tokens`` (the contract above)."""
    try:
        return "return_tokens" in inspect.signature(encoder.forward).parameters
    except (TypeError, ValueError):
        return False


def one_token(pooled: torch.Tensor) -> EncoderTokens:
    """A vector as a sequence of one valid token (a table column, a sentence embedding)."""
    return EncoderTokens(pooled, pooled[:, None], torch.ones(pooled.shape[0], 1, dtype=torch.bool,
                                                            device=pooled.device))


def full_mask(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` as bool, or every position valid when there is none."""
    if mask is None:
        return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    return mask.bool()


def pad_groups(values: torch.Tensor, group: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``(N, F)`` labelled by ``group`` ``(N,)`` in ``[0, groups)`` (a batch of graphs' nodes) as a padded
    ``(groups, max_rows, F)`` tensor (rows of a group in their order) and its mask ``(groups, max_rows)``."""
    group = group.long()
    counts = torch.bincount(group, minlength=groups)
    order = torch.argsort(group, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    sorted_group = group[order]
    position = torch.arange(group.numel(), device=group.device) - starts[sorted_group]
    width = int(counts.max()) if groups and group.numel() else 0
    out = values.new_zeros(groups, max(width, 1), values.shape[-1])
    mask = torch.zeros(groups, max(width, 1), dtype=torch.bool, device=values.device)
    out[sorted_group, position] = values[order]
    mask[sorted_group, position] = True
    return out, mask
