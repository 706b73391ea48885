"""Point clouds (sampled to a fixed size, centred, scaled into the unit sphere) and meshes as graphs
(vertices as nodes, the edges of the triangles in both directions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import EmptyInputError, ShapeError
from xmodal.transforms.base import Transform, register_transform


def normalise_points(points: np.ndarray, source: str = "points") -> np.ndarray:
    """Centre on the centroid and scale so the farthest point lies on the unit sphere."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ShapeError(f"points have shape {pts.shape}, expected (N, 3)", source=source)
    if len(pts) == 0:
        raise EmptyInputError("no points", source=source)
    pts = pts - pts.mean(axis=0)
    radius = float(np.linalg.norm(pts, axis=1).max())
    return (pts / radius if radius > 0 else pts).astype(np.float32)


def mesh_edges(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """int64 ``(2, E)``: every edge of the triangles once per direction, sorted (source, target)."""
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    pairs = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    pairs = np.concatenate([pairs, pairs[:, ::-1]])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]  # degenerate triangles
    keys = np.unique(pairs[:, 0] * num_vertices + pairs[:, 1])
    return np.stack([keys // num_vertices, keys % num_vertices])


@register_transform("point_cloud", modalities=("point_cloud",))
class PointCloudTransform(Transform):
    """Path or (N, 3) array -> float32 ``(num_points, 3)``: ``num_points`` points drawn without replacement
    (with replacement when fewer) by a generator seeded with ``seed``, then :func:`normalise_points`."""

    defaults: ClassVar[dict[str, Any]] = {"num_points": 1024, "seed": 0, "normalise": True}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        from xmodal.data.io import read_point_cloud

        src = str(value) if isinstance(value, (str, Path)) else "points"
        pts = read_point_cloud(value) if isinstance(value, (str, Path)) else np.asarray(value, np.float32)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
            raise ShapeError(f"points have shape {pts.shape}, expected (N, 3) with N > 0", source=src)
        n = self.params["num_points"]
        if n is not None:
            rng = np.random.default_rng(self.params["seed"])
            pts = pts[rng.choice(len(pts), n, replace=len(pts) < n)]
        if self.params["normalise"]:
            pts = normalise_points(pts, src)
        return torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32))


@register_transform("mesh_graph", modalities=("mesh",))
class MeshGraphTransform(Transform):
    """Path -> ``{"x": float32 (V, 3) vertex positions (normalised), "edge_index": int64 (2, E)}``."""

    defaults: ClassVar[dict[str, Any]] = {"normalise": True}
    expensive = True

    def apply(self, value: Any) -> dict[str, torch.Tensor]:
        from xmodal.data.io import read_mesh

        verts, faces = read_mesh(value)
        if len(faces) == 0:
            raise EmptyInputError("mesh has no faces (a point cloud? use the point_cloud transform)",
                                  source=value)
        x = normalise_points(verts, str(value)) if self.params["normalise"] else verts
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "edge_index": torch.from_numpy(mesh_edges(faces, len(verts)))}
