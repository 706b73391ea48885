"""Message-passing GNN for relational data (scene graphs, molecules, skeletons) on plain tensors: node features
``(num_nodes, in_dim)``, ``edge_index`` ``(2, num_edges)`` (row 0 = source, row 1 = target; add both directions
for an undirected graph), and ``batch`` ``(num_nodes,)`` giving each node's graph when several are batched
(concatenate the graphs' nodes and offset their edge indices). Aggregation is a scatter-add with ``index_add_``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from xmodal.errors import ShapeError

Reduce = Literal["sum", "mean", "max"]


def scatter(src: torch.Tensor, index: torch.Tensor, size: int, reduce: Reduce = "sum") -> torch.Tensor:
    """Reduce rows of ``src`` ``(E, F)`` into ``size`` buckets by ``index`` ``(E,)``; empty buckets are 0."""
    out = src.new_zeros(size, src.shape[-1])
    if reduce == "max":
        out = out.fill_(float("-inf")).scatter_reduce_(0, index[:, None].expand_as(src), src, "amax")
        return out.masked_fill(torch.isinf(out), 0.0)
    out.index_add_(0, index, src)
    if reduce == "mean":
        count = src.new_zeros(size).index_add_(0, index, torch.ones_like(index, dtype=src.dtype))
        out = out / count.clamp_min(1.0)[:, None]
    return out


def batch_graphs(
    graphs: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate ``[(x_i, edge_index_i)]`` into one disconnected graph: ``(x, edge_index, batch)``."""
    xs, edges, batch, offset = [], [], [], 0
    for i, (x, e) in enumerate(graphs):
        xs.append(x)
        edges.append(e + offset)
        batch.append(torch.full((x.shape[0],), i, dtype=torch.long))
        offset += x.shape[0]
    return torch.cat(xs), torch.cat(edges, dim=1), torch.cat(batch)


class GINLayer(nn.Module):
    """Graph isomorphism layer (Xu et al. 2019), with edge features as in GINE (Hu et al. 2020):
    ``h_i' = MLP((1 + eps) h_i + AGG_{j -> i} relu(h_j + W_e e_ji))``."""

    def __init__(self, in_dim: int, out_dim: int, edge_dim: int | None = None, aggr: Reduce = "sum") -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)
        )
        self.eps = nn.Parameter(torch.zeros(()))
        self.edge = nn.Linear(edge_dim, in_dim) if edge_dim else None
        self.aggr = aggr

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> torch.Tensor:
        src, dst = edge_index
        msg = h[src]  # (E, in_dim)
        if self.edge is not None:
            if edge_attr is None:
                raise ShapeError("this layer was built with edge_dim and needs edge_attr", source="edge_attr")
            msg = torch.relu(msg + self.edge(edge_attr))
        agg = scatter(msg, dst, h.shape[0], self.aggr)
        return self.mlp((1 + self.eps) * h + agg)


class GNNEncoder(nn.Module):
    """Stack of residual :class:`GINLayer` s, then graph pooling -> ``(num_graphs, out_dim)``.

    ``structure=True`` makes the encoder see the graph's shape when the node features do not tell it (all
    ones, say): every node's input gets ``log(1 + in-degree)``, and the pooled vector gets a learned embedding
    of ``log(1 + number of nodes)``. Without it, constant features reach every node as a multiple of one
    vector (``(1 + eps + degree) h``), which the LayerNorm inside each GIN layer scales away, and the mean
    readout forgets the size: a ring and a clique then look alike (Xu et al. 2019 give degrees as features to
    graphs without node attributes for the same reason).

    ``forward(x, edge_index, batch=None, edge_attr=None, num_graphs=None)``; ``x`` may also be a mapping with
    keys ``x``, ``edge_index`` and optionally ``batch``, ``edge_attr`` (a collated graph).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 64,
        depth: int = 3,
        out_dim: int | None = None,
        edge_dim: int | None = None,
        aggr: Reduce = "sum",
        pool: Reduce = "mean",
        structure: bool = False,
    ) -> None:
        super().__init__()
        self.structure = structure
        self.input = nn.Linear(in_dim + int(structure), hidden)
        self.size = nn.Linear(1, hidden) if structure else None
        self.layers = nn.ModuleList(GINLayer(hidden, hidden, edge_dim, aggr) for _ in range(depth))
        self.pool_mode = pool
        self.proj = nn.Identity() if out_dim is None else nn.Linear(hidden, out_dim)
        self.in_dim, self.out_dim = in_dim, hidden if out_dim is None else out_dim

    def forward_nodes(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Node embeddings ``(num_nodes, hidden)``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ShapeError(
                f"expected node features (num_nodes, {self.in_dim}), got {tuple(x.shape)}", source="x"
            )
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ShapeError(
                f"expected edge_index (2, num_edges), got {tuple(edge_index.shape)}", source="edge_index"
            )
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.shape[0]):
            raise ShapeError(f"edge_index refers to nodes outside [0, {x.shape[0]})", source="edge_index")
        if self.structure:
            degree = x.new_zeros(x.shape[0]).index_add_(0, edge_index[1].long(),
                                                        torch.ones(edge_index.shape[1], dtype=x.dtype,
                                                                   device=x.device))
            x = torch.cat([x, torch.log1p(degree)[:, None]], dim=1)
        h = self.input(x)
        for layer in self.layers:
            h = h + layer(h, edge_index.long(), edge_attr)
        return h

    def forward_all(
        self,
        x: torch.Tensor | Mapping[str, torch.Tensor],
        edge_index: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(nodes (num_nodes, out_dim), batch (num_nodes,), pooled (num_graphs, out_dim))``: the node embeddings
        with the graph-size embedding added to each (with ``structure``) and projected as the pooled vector is,
        so that for ``pool="mean"`` the mean of a graph's nodes is its pooled vector."""
        if isinstance(x, Mapping):
            graph = x
            x, edge_index = graph["x"], graph["edge_index"]
            batch, edge_attr = graph.get("batch", batch), graph.get("edge_attr", edge_attr)
        if edge_index is None:
            raise ShapeError("edge_index is required", source="edge_index")
        h = self.forward_nodes(x, edge_index, edge_attr)
        if batch is None:
            batch = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        n = num_graphs if num_graphs is not None else int(batch.max()) + 1 if batch.numel() else 0
        pooled = scatter(h, batch.long(), n, self.pool_mode)
        if self.size is not None:
            nodes = h.new_zeros(n).index_add_(0, batch.long(), torch.ones_like(batch, dtype=h.dtype))
            size = self.size(torch.log1p(nodes)[:, None])  # (graphs, hidden)
            pooled = pooled + size
            h = h + size[batch.long()]
        return self.proj(h), batch, self.proj(pooled)

    def forward(
        self,
        x: torch.Tensor | Mapping[str, torch.Tensor],
        edge_index: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        num_graphs: int | None = None,
    ) -> torch.Tensor:
        return self.forward_all(x, edge_index, batch, edge_attr, num_graphs)[2]
