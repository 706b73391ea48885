"""Parts the generative tasks share: small MLPs, the EMA update run after every step, and the sample writers
(points as CSV and a scatter plot, images as PNG through :mod:`xmodal.generative.writers`) that ``generate``
uses during training and in ``xmodal generate``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmodal.errors import ConfigError


def mlp(inp: int, out: int, hidden: int, depth: int, act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` units with ``act``, then a linear output."""
    if hidden < 1 or depth < 1:
        raise ConfigError(f"model.hidden and model.depth must be >= 1, got {hidden} and {depth}")
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else hidden, hidden), act()]
    return nn.Sequential(*layers, nn.Linear(hidden, out))


def update_ema(model: nn.Module, step: int) -> None:
    """``after_step`` of models holding ``ema`` (an :class:`~xmodal.generative.gan.EMA`) of ``ema_source``:
    the average lives in the model, so the checkpoint saves it and a resumed run continues it exactly."""
    from xmodal.generative.gan import EMA

    ema, source = model.ema, model.ema_source
    if not isinstance(ema, EMA) or not isinstance(source, str):
        raise TypeError(f"update_ema: {type(model).__name__} needs an EMA `ema` and the name of its averaged "
                        "submodule `ema_source`")
    ema.update(model.get_submodule(source))


def seeded(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``: the only source of a sample's randomness."""
    return torch.Generator(device=device).manual_seed(int(seed))


def write_points(points: torch.Tensor, out: Path, name: str = "samples") -> list[Path]:
    """``<name>.csv`` (columns x, y) and a scatter plot ``<name>.png`` of 2-D points ``(n, 2)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    pts = points.detach().double().cpu().numpy()
    table = out / f"{name}.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "y"])
        writer.writerows([f"{x:.6f}", f"{y:.6f}"] for x, y in pts)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6)
    ax.set_aspect("equal")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    fig.tight_layout()
    picture = out / f"{name}.png"
    fig.savefig(picture, metadata={"Software": None})  # no version stamp: the same seed gives the same bytes
    plt.close(fig)
    return [picture, table]


def write_images(images: torch.Tensor, out: Path, labels: Sequence[int] | None = None, scale: int = 8) -> list[Path]:
    """One PNG per image ``(n, H, W)`` in [0, 1] (``sample_<i>[_class<c>].png``, upscaled ``scale`` times with
    nearest neighbours so 8x8 digits can be seen) and ``grid.png`` of all of them, one row per ten."""
    from xmodal.generative.writers import write_png

    out.mkdir(parents=True, exist_ok=True)
    pixels = to_uint8(images)
    paths = [write_png(image, out / f"sample_{i:04d}{f'_class{labels[i]}' if labels is not None else ''}.png", scale)
             for i, image in enumerate(pixels)]
    return [write_png(image_grid(pixels, scale), out / "grid.png"), *paths]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] as uint8 pixels (clamped, rounded)."""
    return (images.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def image_grid(pixels: np.ndarray, scale: int = 8) -> np.ndarray:
    """uint8 images ``(n, H, W)`` upscaled ``scale`` times (nearest) in rows of ten, 2-px black gaps."""
    cols = min(10, len(pixels))
    rows = -(-len(pixels) // cols)
    h, w = pixels.shape[1] * scale, pixels.shape[2] * scale
    grid = np.zeros((rows * (h + 2), cols * (w + 2)), dtype=np.uint8)
    for i, image in enumerate(pixels):
        r, c = divmod(i, cols)
        grid[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = image.repeat(scale, 0).repeat(scale, 1)
    return grid
