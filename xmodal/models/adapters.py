"""Input adapters: the batch layout of a modality (its spec's axes) to the layout an encoder family expects.

Each adapter holds one encoder, reshapes ``batch[modality]`` for it, passes the padding mask where the family
supports one, and exposes the encoder's ``out_dim``. They hold no parameters of their own. ``forward(x, mask,
return_tokens=True)`` returns the pooled vector with the positions it pools as tokens
(:class:`~xmodal.nn.tokens.EncoderTokens`), for token-level fusion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.cnn import ConvEncoder
from xmodal.nn.encoders.gnn import GNNEncoder, batch_graphs
from xmodal.nn.encoders.rnn import RNNEncoder
from xmodal.nn.encoders.ssm import SSMEncoder
from xmodal.nn.encoders.transformer import TransformerEncoder
from xmodal.nn.tokens import EncoderTokens, full_mask, one_token, pad_groups

Layout = Callable[[torch.Tensor], torch.Tensor]
SequenceEncoder = TransformerEncoder | SSMEncoder | RNNEncoder  # each: forward_all -> (steps, pooled), proj


class ConvAdapter(nn.Module):
    """A :class:`ConvEncoder` behind a layout function, with an exact padding mask along one axis.

    ``layout`` maps the batch tensor to ``(batch, channels, *spatial)``; ``time_dim`` is the axis of that tensor
    the ``(batch, time)`` mask runs along (None: the modality is never padded). Padded positions are zeroed
    before the first stage and after every stage (each stage's mask is the strided mask of the one before),
    and pooling is the mean over valid positions, so a padded input encodes as its unpadded self would.
    """

    def __init__(self, encoder: ConvEncoder, layout: Layout, time_dim: int | None, source: str) -> None:
        super().__init__()
        self.encoder, self.layout, self.time_dim, self.source = encoder, layout, time_dim, source
        self.out_dim = encoder.out_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        x = self.layout(x)
        full = None if mask is None else self._spatial_mask(x, mask)
        if not return_tokens:
            return self.encoder(x) if full is None else self.encoder(x, full)
        feats, fmask = self.encoder.forward_features(x, full)
        # every position of the last feature map is a token, projected as the pooled vector is (the projection
        # is linear, so the masked mean of the tokens is the pooled vector)
        tokens = self.encoder.proj(feats.flatten(2).transpose(1, 2))
        return EncoderTokens(self.encoder.pool(feats, fmask), tokens,
                             full_mask(tokens, None if fmask is None else fmask.flatten(1)))

    def _spatial_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.time_dim is None:
            raise ShapeError(f"{self.source} is never padded, but the batch holds a mask for it", source=self.source)
        if mask.shape != (x.shape[0], x.shape[self.time_dim]):
            raise ShapeError(f"mask {tuple(mask.shape)} does not match the time axis of {tuple(x.shape)}",
                             source=f"{self.source}_mask")
        # The encoder masks every spatial position itself (after each conv, and in the pooling): broadcast the
        # (batch, time) mask over the other spatial axes.
        shape = [x.shape[0]] + [1] * (x.dim() - 2)
        shape[self.time_dim - 1] = -1
        return mask.bool().view(shape).expand(x.shape[0], *x.shape[2:])


class SequenceAdapter(nn.Module):
    """A sequence encoder on ``(batch, time, features)``: extra trailing axes are flattened into features
    (a skeleton's ``(time, joints, xyz)`` -> ``(time, joints * 3)``), a front end may embed the steps first."""

    def __init__(self, encoder: SequenceEncoder, front: nn.Module | None = None, flatten: bool = True) -> None:
        super().__init__()
        self.front = front
        self.encoder = encoder
        self.flatten = flatten
        self.out_dim = encoder.out_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        if self.flatten and x.dim() > 3:
            x = x.flatten(2)
        if self.front is not None:
            x = self.front(x)
        if not return_tokens:
            return self.encoder(x, mask=mask)
        steps, pooled = self.encoder.forward_all(x, mask=mask)  # every family here: (steps, pooled)
        valid = full_mask(x, mask)
        if steps.shape[1] == valid.shape[1] + 1:  # a CLS position first: a token too
            valid = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1)
        return EncoderTokens(pooled, self.encoder.proj(steps), valid)


class NoteEmbedding(nn.Module):
    """MIDI notes ``(batch, notes, 5)`` (start, end in seconds, pitch, velocity, program with 128 = drums) to
    ``(batch, notes, dim)``: learned pitch and program embeddings plus a linear map of onset (relative to the
    first note), duration and velocity / 127."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pitch = nn.Embedding(128, dim)
        self.program = nn.Embedding(129, dim)
        self.continuous = nn.Linear(3, dim)

    def forward(self, notes: torch.Tensor) -> torch.Tensor:
        if notes.dim() != 3 or notes.shape[-1] != 5:
            raise ShapeError(f"expected notes (batch, notes, 5), got {tuple(notes.shape)}", source="midi_notes")
        start, end = notes[..., 0], notes[..., 1]
        onset = start - start[:, :1]
        cont = torch.stack([onset, end - start, notes[..., 3] / 127.0], dim=-1)
        pitch = notes[..., 2].long().clamp(0, 127)
        program = notes[..., 4].long().clamp(0, 128)
        return self.pitch(pitch) + self.program(program) + self.continuous(cont)


def _as_graph(item: Any, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One graph as ``(x (nodes, F), edge_index (2, E))``: a Graph, a mesh dict or an ``(x, edges)`` pair."""
    if isinstance(item, Mapping) and "vertices" in item:  # a mesh: vertices are nodes, face sides are edges
        v = torch.as_tensor(item["vertices"], dtype=torch.float32)
        f = torch.as_tensor(item["faces"], dtype=torch.long)
        sides = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]) if f.numel() else f.new_zeros(0, 2)
        edges = torch.cat([sides, sides.flip(1)]).unique(dim=0).T  # both directions, once each
        return v, edges.contiguous()
    if hasattr(item, "x") and hasattr(item, "edge_index"):
        return torch.as_tensor(item.x, dtype=torch.float32), torch.as_tensor(item.edge_index, dtype=torch.long)
    if isinstance(item, Sequence) and len(item) == 2:
        return torch.as_tensor(item[0], dtype=torch.float32), torch.as_tensor(item[1], dtype=torch.long)
    raise ShapeError(f"expected a graph (x, edge_index) or a mesh {{vertices, faces}}, got {type(item).__name__}",
                     source=source)


class GraphAdapter(nn.Module):
    """A :class:`GNNEncoder` on a batch of graphs: either collated (``{"x", "edge_index", "batch"}`` with edge
    indices already offset) or a list of graphs / meshes, batched here into one disconnected graph."""

    def __init__(self, encoder: GNNEncoder, source: str) -> None:
        super().__init__()
        self.encoder, self.source = encoder, source
        self.out_dim = encoder.out_dim

    def forward(self, graphs: Any, mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        if isinstance(graphs, Mapping) and "x" in graphs:
            n = graphs.get("num_graphs")
            x, edge_index = graphs["x"], graphs["edge_index"]
            batch, edge_attr, num = graphs.get("batch"), graphs.get("edge_attr"), None if n is None else int(n)
        else:
            if not isinstance(graphs, Sequence) or not graphs:
                raise ShapeError(f"expected a non-empty list of graphs, got {type(graphs).__name__}",
                                 source=self.source)
            device = next(self.encoder.parameters()).device
            x, edge_index, batch = (t.to(device) for t in batch_graphs([_as_graph(g, self.source) for g in graphs]))
            edge_attr, num = None, len(graphs)
        if not return_tokens:
            return self.encoder(x, edge_index, batch, edge_attr, num_graphs=num)
        nodes, batch, pooled = self.encoder.forward_all(x, edge_index, batch, edge_attr, num_graphs=num)
        tokens, valid = pad_groups(nodes, batch, pooled.shape[0])  # each graph's nodes, padded to the largest
        return EncoderTokens(pooled, tokens, valid)


class TabularMLP(nn.Module):
    """Numeric columns ``(batch,)`` or ``(batch, features)`` -> ``(batch, width)`` (LayerNorm over the features
    first unless ``norm`` is false or there is one feature, which LayerNorm would map to a constant);
    categorical indices ``(batch,)`` are embedded first when ``num_categories`` is given."""

    def __init__(self, in_dim: int, width: int, depth: int, dropout: float, num_categories: int | None,
                 norm: bool = True) -> None:
        super().__init__()
        self.embed = None if num_categories is None else nn.Embedding(num_categories, width)
        self.in_dim = width if num_categories is not None else in_dim
        self.norm = nn.LayerNorm(in_dim) if norm and num_categories is None and in_dim > 1 else nn.Identity()
        layers: list[nn.Module] = []
        prev = self.in_dim
        for _ in range(depth):
            layers += [nn.Linear(prev, width), nn.GELU(), nn.Dropout(dropout)]
            prev = width
        self.net = nn.Sequential(*layers)
        self.num_categories = num_categories
        self.out_dim = width

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        out = self._encode(x)
        return one_token(out) if return_tokens else out  # a column is one token

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            if x.dtype.is_floating_point or x.dim() != 1:
                raise ShapeError(f"expected category indices (batch,) of integers, got {tuple(x.shape)} {x.dtype}",
                                 source="categorical")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.embed.num_embeddings):
                raise ShapeError(f"category indices must lie in [0, {self.embed.num_embeddings})",
                                 source="categorical")
            return self.net(self.embed(x))
        x = x.float()
        if x.dim() == 1:
            x = x[:, None]
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(f"expected numeric values (batch, {self.in_dim}), got {tuple(x.shape)}",
                             source="numeric")
        return self.net(self.norm(x))


class TextProjection(nn.Module):
    """The trainable part of a frozen sentence-encoder tower: LayerNorm, Linear, GELU, Dropout, Linear on
    ``(batch, in_dim)`` sentence embeddings. Given strings, the frozen MiniLM tower embeds them first (loaded
    from its package on first use; it is not part of the state dict, so checkpoints hold only the projection)."""

    def __init__(self, in_dim: int = 384, hidden: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden))
        self.out_dim = hidden
        self._tower: list[nn.Module] = []  # a list keeps the frozen tower out of the module tree

    def forward(self, x: torch.Tensor | Sequence[str], mask: torch.Tensor | None = None,
                return_tokens: bool = False) -> torch.Tensor | EncoderTokens:
        out = self._encode(x)
        return one_token(out) if return_tokens else out  # the frozen tower pools a sentence: one token

    def _encode(self, x: torch.Tensor | Sequence[str]) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            emb = x
        else:
            if not self._tower:
                from xmodal.pretrained.minilm import MiniLMEncoder

                self._tower.append(MiniLMEncoder())
            device = self.net[1].weight.device
            emb = self._tower[0](list(x)).to(device)
        if emb.dim() != 2:
            raise ShapeError(f"expected sentence embeddings (batch, dim), got {tuple(emb.shape)}", source="text")
        return self.net(emb)
