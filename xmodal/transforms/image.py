"""Images: decode (any PIL mode: grey, RGBA and palette become RGB), resize, normalise -> float (3, H, W)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from xmodal.errors import ShapeError
from xmodal.transforms.base import Transform, register_transform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_rgb(array: np.ndarray, source: str) -> np.ndarray:
    """uint8 (H, W), (H, W, 1|3|4) -> (H, W, 3); alpha is composited on black, as PIL's convert drops it."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ShapeError(f"image array has shape {array.shape}, expected (H, W[, 1|3|4])", source=source)
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3]


@register_transform("image", modalities=("image",))
class ImageTransform(Transform):
    """Path or uint8 array -> float32 ``(3, H, W)``: RGB, bicubic resize to ``size`` (H, W), scaled to [0, 1],
    then ``(x - mean) / std`` (ImageNet statistics by default; ``mean=None`` keeps [0, 1]). ``uint8=True``
    returns the resized RGB as uint8 ``(3, H, W)`` instead (a quarter of the memory, for stores that
    normalise per batch)."""

    defaults: ClassVar[dict[str, Any]] = {"size": (64, 64), "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                                          "uint8": False}
    expensive = True

    def apply(self, value: Any) -> torch.Tensor:
        from PIL import Image

        from xmodal.data.io import read_image

        size = self.params["size"]
        if isinstance(value, (str, Path)):
            rgb = read_image(value, "RGB", tuple(size) if size else None)
        else:
            rgb = _to_rgb(np.asarray(value, dtype=np.uint8), "image array")
            if size:
                rgb = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BICUBIC))
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # (3, H, W) uint8
        if self.params["uint8"]:
            return x
        x = x.float().div_(255.0)
        if self.params["mean"] is not None:
            mean = torch.tensor(self.params["mean"], dtype=torch.float32).view(3, 1, 1)
            std = torch.tensor(self.params["std"], dtype=torch.float32).view(3, 1, 1)
            x = (x - mean) / std
        return x
