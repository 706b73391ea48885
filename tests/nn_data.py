"""Real signals for the nn tests: ALSA's spoken channel names (alsa-utils) and skimage's sample images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ALSA = Path("/usr/share/sounds/alsa")


def alsa_waveforms(n: int = 4, stride: int = 16, max_len: int = 4000) -> list[torch.Tensor]:
    """``n`` real speech clips, decimated by ``stride`` (cheap, aliasing is harmless here) and cut to
    ``max_len``, each ``(1, time)`` with a different length."""
    sf = pytest.importorskip("soundfile")
    files = sorted(ALSA.glob("*.wav"))
    if len(files) < n:
        pytest.skip(f"needs {n} WAV files of alsa-utils in {ALSA} (Debian package alsa-utils)")
    clips = []
    for i, f in enumerate(files[:n]):
        audio, _ = sf.read(f, dtype="float32", always_2d=True)
        x = torch.from_numpy(audio[::stride, 0].copy())
        clips.append(x[: int(max_len * (1 - 0.2 * i))][None])  # distinct lengths
    return clips


def skimage_images(size: int = 32) -> torch.Tensor:
    """Four real RGB images from skimage, resized to ``(4, 3, size, size)`` in [0, 1]."""
    data = pytest.importorskip("skimage.data")
    imgs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    out = []
    for im in imgs:
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1).float()[None] / 255.0
        out.append(torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True))
    return torch.cat(out)


def pad_batch(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(channels, time)`` tensors to ``(batch, channels, T)`` with a ``(batch, T)`` valid mask."""
    T = max(s.shape[-1] for s in seqs)
    x = torch.zeros(len(seqs), seqs[0].shape[0], T)
    mask = torch.zeros(len(seqs), T, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, :, : s.shape[-1]] = s
        mask[i, : s.shape[-1]] = True
    return x, mask
