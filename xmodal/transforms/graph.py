"""Graphs: read to ``{"x", "edge_index"}``, and :func:`collate_graphs`, which batches graphs the way PyG does
(nodes concatenated, edge indices offset by the nodes before them, a ``batch`` vector naming each node's
graph)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import ShapeError
from xmodal.transforms.base import Transform, register_transform


@register_transform("graph", modalities=("graph",))
class GraphTransform(Transform):
    """Path (.npz/.json) or :class:`~xmodal.data.io.Graph` -> ``{"x": float32 (N, F), "edge_index": int64
    (2, E)}`` (plus ``"edge_attr"`` when the graph has it)."""

    defaults: ClassVar[dict[str, Any]] = {}
    expensive = True

    def apply(self, value: Any) -> dict[str, torch.Tensor]:
        from xmodal.data.io import Graph, read_graph
        from xmodal.data.io.graph import check_graph

        g = check_graph(value, "graph") if isinstance(value, Graph) else read_graph(value)
        out = {"x": torch.from_numpy(np.ascontiguousarray(g.x, dtype=np.float32)),
               "edge_index": torch.from_numpy(np.ascontiguousarray(g.edge_index, dtype=np.int64))}
        if g.edge_attr is not None:
            out["edge_attr"] = torch.from_numpy(np.ascontiguousarray(g.edge_attr, dtype=np.float32))
        return out


def collate_graphs(graphs: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batch graphs: ``x`` (sum N, F), ``edge_index`` (2, sum E) offset per graph, ``batch`` int64 (sum N,)
    graph index of each node, ``ptr`` int64 (B + 1,) node offsets, and ``edge_attr`` when every graph has it."""
    if not graphs:
        raise ShapeError("collate_graphs: no graphs to batch", source="graphs")
    feats = {g["x"].shape[1] for g in graphs}
    if len(feats) != 1:
        raise ShapeError(f"collate_graphs: node feature sizes differ across the batch: {sorted(feats)}",
                         source="graphs")
    sizes = torch.tensor([g["x"].shape[0] for g in graphs], dtype=torch.int64)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
    out = {
        "x": torch.cat([g["x"] for g in graphs]),
        "edge_index": torch.cat([g["edge_index"] + ptr[i] for i, g in enumerate(graphs)], dim=1),
        "batch": torch.repeat_interleave(torch.arange(len(graphs)), sizes),
        "ptr": ptr,
    }
    if all("edge_attr" in g for g in graphs):
        out["edge_attr"] = torch.cat([g["edge_attr"] for g in graphs])
    return out
