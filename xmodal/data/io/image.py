"""Images with PIL: uint8 (H, W, 3) arrays for storage, float (3, H, W) tensors in [0, 1] for models."""

from __future__ import annotations

import functools

import numpy as np
import torch

from xmodal.data.io._common import PathLike, decoding, existing

# PIL formats that open but cannot decode pixels here: stubs that need an external handler (BUFR, GRIB, HDF5,
# WMF/EMF), MPEG (identified only), EPS (needs Ghostscript) and IPTC (metadata, not an image).
_NOT_DECODED = {"BUFR", "GRIB", "HDF5", "WMF", "MPEG", "EPS", "IPTC"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N"}


@functools.lru_cache(maxsize=1)
def image_suffixes() -> tuple[str, ...]:
    """Lower-case suffixes of every still-image format that :func:`read_image` decodes (PIL's registered
    formats less those it cannot decode here): .png, .jpg, .pgm, .ppm, .tiff, .webp and some thirty more."""
    from PIL import Image

    Image.init()
    return tuple(sorted(e for e, f in Image.registered_extensions().items()
                        if f in Image.OPEN and f not in _NOT_DECODED))


def _to_eight_bits(im):
    """16-bit grey (PNG, TIFF, PGM) scaled to 8 bits, v / 257 rounded (65535 -> 255); PIL's own ``convert``
    clips every value above 255 to white. Other modes are returned as they are."""
    from PIL import Image

    if im.mode in _SIXTEEN_BIT or (im.mode == "I" and im.getextrema()[1] > 255):
        values = np.asarray(im, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            return im  # not 16-bit data: leave it to PIL's conversion
        return Image.fromarray(np.rint(values / 257.0).astype(np.uint8), mode="L")
    return im


def read_image(path: PathLike, mode: str = "RGB", size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an image to uint8 ``(H, W, C)`` (``(H, W)`` for mode "L"); ``size=(H, W)`` resizes bicubically.

    16-bit grey images are scaled to 8 bits (v / 257), not clipped."""
    from PIL import Image

    p = existing(path)
    with decoding(p, "image"):
        with Image.open(p) as im:
            im.load()  # PIL decodes lazily: force it here so a truncated file fails inside decoding()
            im = _to_eight_bits(im).convert(mode)
            if size is not None:
                im = im.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            return np.asarray(im, dtype=np.uint8).copy()


def image_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, C)`` or ``(H, W)`` -> float32 ``(C, H, W)`` in [0, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div_(255.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float ``(C, H, W)`` in [0, 1] -> uint8 ``(H, W, C)``, rounded and clipped."""
    arr = tensor.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return arr.transpose(1, 2, 0)


def load_image_tensor(path: PathLike, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an RGB image as float32 ``(3, H, W)`` in [0, 1]."""
    return image_to_tensor(read_image(path, "RGB", size))


def write_image(path: PathLike, image: np.ndarray | torch.Tensor) -> None:
    """Write uint8 ``(H, W, C)``/``(H, W)`` or a float ``(C, H, W)`` tensor in [0, 1]; format from the suffix."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        image = tensor_to_image(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
