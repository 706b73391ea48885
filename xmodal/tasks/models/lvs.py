"""LVS, localising visual sounds the hard way (Chen et al., CVPR 2021; ``AVENet`` in
hche11/Localizing-Visual-Sounds-the-Hard-Way ``model.py``): contrastive localisation with a hard-negative trimap.

An image encoder gives a feature map and an audio encoder (on a spectrogram, global max pooling) a vector, both
L2-normalised over channels (``xmodal.nn`` :class:`CNN2d` stands in for the two ResNet-18s). Their cosine map
``A`` is the localisation heatmap. The trimap splits it softly: ``Pos = sigmoid((A - 0.65) / 0.03)``,
``Neg = 1 - sigmoid((A - 0.4) / 0.03)``. The logits for InfoNCE at temperature 0.07 are, per clip: the mean of
``A`` over its own positive region (index 0, the target), the mean over the positive region of each other
clip's audio (the clip's own entry on that diagonal multiplied by ``1 - 100`` to push it out, as the reference),
and the mean over its own negative region (the hard negative, last).

Two options beyond the reference: ``acoustic_dim > 0`` adds a linear projection of acoustic descriptors (pitch,
spectral shape, onsets; :mod:`xmodal.data.acoustic`) to the pooled audio vector before it is normalised, and
:func:`lvs_loss` with a ``sounding`` mask treats silent clips as negatives: they leave the InfoNCE rows (their
audio stays a column, a negative for every other image) and their whole map is pushed out of the positive
region (the mean of ``Pos`` over the map, weighted by ``silent_weight``). ``score``, the peak of ``A``, says how
strongly something in the frame sounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.cnn import CNN2d

__all__ = ["FeatureEncoder", "LVSNet", "lvs_loss"]


class FeatureEncoder(Protocol):
    """What the localisation models need of an encoder (an ``nn.Module``): ``forward_features(x)`` giving
    ``((N, C, ...) feature map, anything)``, as :class:`CNN2d` does."""

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]: ...


class LVSNet(nn.Module):
    """``forward(image (N, 3, H, W), spectrogram (N, 1, F, T), acoustic (N, acoustic_dim) | None)`` ->
    ``{"heatmap": (N, h, w) cosine map, "logits": (N, N + 2), "pos": (N, h, w), "neg": (N, h, w), "score": (N,)}``."""

    image_encoder: FeatureEncoder
    audio_encoder: FeatureEncoder

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), audio_channels: Sequence[int] | None = None,
                 epsilon: float = 0.65, epsilon2: float = 0.4, tau: float = 0.03, temperature: float = 0.07,
                 trimap: bool = True, hard_negative: bool = True, acoustic_dim: int = 0,
                 image_encoder: FeatureEncoder | None = None, audio_encoder: FeatureEncoder | None = None) -> None:
        super().__init__()
        audio_channels = tuple(channels) if audio_channels is None else tuple(audio_channels)
        if audio_channels[-1] != channels[-1]:
            raise ShapeError("the image and audio encoders must end with the same width", source="LVSNet")
        # either encoder may be injected: any module whose forward_features(x) gives ((N, channels[-1], ...), _)
        self.image_encoder = image_encoder if image_encoder is not None else CNN2d(3, channels)
        self.audio_encoder = audio_encoder if audio_encoder is not None else CNN2d(1, audio_channels)
        self.epsilon, self.epsilon2, self.tau, self.temperature = epsilon, epsilon2, tau, temperature
        self.trimap, self.hard_negative = trimap, hard_negative
        self.acoustic_dim = acoustic_dim
        self.acoustic = nn.Linear(acoustic_dim, channels[-1]) if acoustic_dim else None

    def forward(self, image: torch.Tensor, spectrogram: torch.Tensor,
                acoustic: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if image.shape[0] != spectrogram.shape[0]:
            raise ShapeError(f"batch sizes differ: {tuple(image.shape)} and {tuple(spectrogram.shape)}", "LVSNet")
        img = F.normalize(self.image_encoder.forward_features(image)[0], dim=1)  # (N, C, h, w)
        aud = self.audio_encoder.forward_features(spectrogram)[0].amax(dim=(2, 3))  # (N, C)
        if self.acoustic is not None:
            if acoustic is None or acoustic.shape != (image.shape[0], self.acoustic_dim):
                got = None if acoustic is None else tuple(acoustic.shape)
                raise ShapeError(f"acoustic: expected ({image.shape[0]}, {self.acoustic_dim}), got {got}", "LVSNet")
            aud = aud + self.acoustic(acoustic)
        aud = F.normalize(aud, dim=1)
        a_own = torch.einsum("nchw,nc->nhw", img, aud)  # each image with its own audio
        a_all = torch.einsum("nchw,kc->nkhw", img, aud)  # each image with every audio
        pos = torch.sigmoid((a_own - self.epsilon) / self.tau)
        neg = 1 - torch.sigmoid((a_own - (self.epsilon2 if self.trimap else self.epsilon)) / self.tau)
        pos_all = torch.sigmoid((a_all - self.epsilon) / self.tau)
        n = image.shape[0]
        own_mask = 1 - 100 * torch.eye(n, device=image.device, dtype=img.dtype)
        # the clamp only guards a region whose sigmoid underflows to 0 (A far below epsilon everywhere)
        sim_pos = (pos * a_own).flatten(1).sum(-1) / pos.flatten(1).sum(-1).clamp_min(1e-12)
        sim_other = (pos_all * a_all).flatten(2).sum(-1) / pos_all.flatten(2).sum(-1).clamp_min(1e-12) * own_mask
        columns = [sim_pos[:, None], sim_other]
        if self.hard_negative:
            columns.append(((neg * a_own).flatten(1).sum(-1) / neg.flatten(1).sum(-1).clamp_min(1e-12))[:, None])
        return {"heatmap": a_own, "logits": torch.cat(columns, dim=1) / self.temperature, "pos": pos, "neg": neg,
                "score": a_own.flatten(1).amax(-1)}


def lvs_loss(outputs: dict[str, torch.Tensor], sounding: torch.Tensor | None = None,
             silent_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy with the own positive region (column 0) as the target. With ``sounding`` (N,) bool, only
    sounding clips are InfoNCE rows, and each silent clip adds ``silent_weight`` x the mean of its ``Pos`` map."""
    logits = outputs["logits"]
    if sounding is None:
        return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
    sounding = sounding.bool()
    rows = logits[sounding]
    loss = logits.new_zeros(())
    if rows.shape[0]:
        loss = loss + F.cross_entropy(rows, torch.zeros(rows.shape[0], dtype=torch.long, device=logits.device))
    silent = outputs["pos"][~sounding]
    if silent.shape[0]:
        loss = loss + silent_weight * silent.flatten(1).mean(-1).mean()
    return loss + 0.0 * logits.sum()  # the logits stay in the graph in an all-silent batch (DDP needs them)
