"""Motion: skeletons (time, joints, 2|3) centred on a root joint and scaled; SMPL and other stored arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import CorruptFileError, NonFiniteError, ShapeError
from xmodal.transforms.base import Transform, register_transform

SKELETON_KEYS = ("joints", "keypoints", "positions", "poses", "skeleton")


def read_npz_array(path: str | Path, keys: tuple[str, ...] = ()) -> np.ndarray:
    """The first of ``keys`` found in an .npz (or its only array); .npy files load directly."""
    from xmodal.data.io._common import decoding, existing

    p = existing(path)
    with decoding(p, "array"):
        if p.suffix.lower() == ".npy":
            return np.load(p, allow_pickle=False)
        with np.load(p, allow_pickle=False) as z:
            for k in keys:
                if k in z.files:
                    return z[k]
            if len(z.files) == 1:
                return z[z.files[0]]
            raise CorruptFileError(f"no array named {' or '.join(keys)}; found {sorted(z.files)}", source=p)


def normalise_skeleton(joints: np.ndarray, root: int = 0, source: str = "skeleton") -> np.ndarray:
    """Subtract the root joint in every frame, then divide by the largest joint distance from the root over
    the clip (the skeleton fits in the unit ball; a clip of one point stays zero)."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[2] not in (2, 3):
        raise ShapeError(f"skeleton has shape {j.shape}, expected (time, joints, 2|3)", source=source)
    if not np.isfinite(j).all():
        raise NonFiniteError("skeleton holds NaN or infinite coordinates", source=source)
    centred = j - j[:, root:root + 1, :]
    scale = float(np.linalg.norm(centred, axis=2).max())
    return (centred / scale if scale > 0 else centred).astype(np.float32)


@register_transform("skeleton", modalities=("skeleton_2d", "skeleton_3d"))
class SkeletonTransform(Transform):
    """Path (.npz/.npy) or array -> float32 ``(time, joints, 2|3)``, :func:`normalise_skeleton` applied."""

    defaults: ClassVar[dict[str, Any]] = {"root": 0, "normalise": True}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        src = str(value) if isinstance(value, (str, Path)) else "skeleton"
        arr = read_npz_array(value, SKELETON_KEYS) if isinstance(value, (str, Path)) else np.asarray(value)
        arr = normalise_skeleton(arr, self.params["root"], src) if self.params["normalise"] else arr
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


@register_transform("array", modalities=("smpl", "vq_tokens", "optical_flow"))
class ArrayTransform(Transform):
    """Path (.npz/.npy) or array -> the stored tensor as is (SMPL parameters (time, params), VQ codes
    (tokens,), optical flow (time, 2, H, W)); an SMPL .npz with ``poses``, ``betas``, ``trans`` is joined into (time, 72 + 10 + 3)."""

    defaults: ClassVar[dict[str, Any]] = {"key": None}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        if not isinstance(value, (str, Path)):
            return torch.as_tensor(np.asarray(value))
        p = Path(value)
        if p.suffix.lower() == ".npz" and self.params["key"] is None:
            with np.load(p, allow_pickle=False) as z:
                if {"poses", "betas", "trans"} <= set(z.files):
                    poses, trans = z["poses"].reshape(len(z["poses"]), -1), z["trans"]
                    betas = np.broadcast_to(z["betas"].reshape(1, -1)[:, :10], (len(poses), 10))
                    return torch.from_numpy(np.concatenate([poses, betas, trans], axis=1).astype(np.float32))
        keys = (self.params["key"],) if self.params["key"] else ("codes", "tokens", "flow", "x", "data")
        return torch.from_numpy(np.ascontiguousarray(read_npz_array(p, keys)))
