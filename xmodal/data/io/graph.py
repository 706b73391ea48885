"""Graphs: node features and an edge index, stored as .npz (``x``, ``edge_index``, optional ``edge_attr``,
``y``) or JSON (``{"x": [[...], ...], "edge_index": [[src...], [dst...]]}`` or ``"edges": [[s, d], ...]``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmodal.config.loaders import read_json
from xmodal.data.io._common import PathLike, decoding, existing
from xmodal.errors import CorruptFileError, EmptyInputError, NonFiniteError, ShapeError


@dataclass
class Graph:
    """``x``: float32 (N, F) node features; ``edge_index``: int64 (2, E) source/target rows (PyG layout)."""

    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray | None = None  # (E, D)
    y: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


def check_graph(g: Graph, source: str | Path | None = None) -> Graph:
    """Shapes and index ranges, with errors naming ``source``."""
    if g.x.ndim != 2:
        raise ShapeError(f"node features have shape {g.x.shape}, expected (nodes, features)", source=source)
    if g.x.shape[0] == 0:
        raise EmptyInputError("graph has no nodes", source=source)
    if not np.all(np.isfinite(g.x)):
        raise NonFiniteError(f"{int((~np.isfinite(g.x)).sum())} node feature values are NaN or infinite",
                             source=source)
    if g.edge_index.ndim != 2 or g.edge_index.shape[0] != 2:
        raise ShapeError(f"edge_index has shape {g.edge_index.shape}, expected (2, edges)", source=source)
    if g.edge_index.size and (g.edge_index.min() < 0 or g.edge_index.max() >= g.num_nodes):
        raise CorruptFileError(f"edge_index refers to nodes outside [0, {g.num_nodes})", source=source)
    if g.edge_attr is not None and g.edge_attr.shape[0] != g.num_edges:
        raise ShapeError(f"edge_attr has {g.edge_attr.shape[0]} rows for {g.num_edges} edges", source=source)
    return g


def _edge_index(value: object, source: Path) -> np.ndarray:
    """int64 (2, E) from a stored edge index, refusing what a reshape or a cast would hide: another row
    count, or values that are not whole numbers (a cast would truncate them)."""
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros((2, 0), np.int64)
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise ShapeError(f"edge_index has shape {arr.shape}, expected (2, edges)", source=source)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise CorruptFileError("edge_index holds values that are not whole node numbers", source=source)
    elif arr.dtype.kind not in "iu":
        raise CorruptFileError(f"edge_index holds {arr.dtype} values, expected integers", source=source)
    return arr.astype(np.int64)


def read_graph(path: PathLike) -> Graph:
    """Read a graph from .npz or .json (layouts in the module docstring)."""
    p = existing(path)
    with decoding(p, "graph"):
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        else:
            d = read_json(p)
            if not isinstance(d, dict):
                raise CorruptFileError(f"expected a JSON object, got a {type(d).__name__}", source=p)
            if "edges" in d and "edge_index" not in d:
                edges = np.asarray(d.pop("edges"))
                if edges.size and (edges.ndim != 2 or edges.shape[1] != 2):
                    raise ShapeError(f"'edges' has shape {edges.shape}, expected (edges, 2) pairs", source=p)
                d["edge_index"] = edges.reshape(-1, 2).T
        if "x" not in d or "edge_index" not in d:
            raise CorruptFileError(f"graph needs keys 'x' and 'edge_index', found {sorted(d)}", source=p)
        g = Graph(
            x=np.asarray(d["x"], dtype=np.float32),
            edge_index=_edge_index(d["edge_index"], p),
            edge_attr=None if d.get("edge_attr") is None else np.asarray(d["edge_attr"], dtype=np.float32),
            y=None if d.get("y") is None else np.asarray(d["y"]),
        )
    return check_graph(g, p)


def write_graph(path: PathLike, graph: Graph) -> None:
    """Write ``graph`` as .npz or .json (by suffix)."""
    p = Path(path)
    check_graph(graph, p)
    d = {"x": graph.x, "edge_index": graph.edge_index}
    if graph.edge_attr is not None:
        d["edge_attr"] = graph.edge_attr
    if graph.y is not None:
        d["y"] = graph.y
    if p.suffix.lower() == ".npz":
        np.savez(p, **d)  # type: ignore[arg-type]  # numpy stubs type **kwds as the allow_pickle flag
    else:
        p.write_text(json.dumps({k: np.asarray(v).tolist() for k, v in d.items()}))
