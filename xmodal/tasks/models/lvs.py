"""LVS, localising visual sounds the hard way (Chen et al., CVPR 2021; ``AVENet`` in
hche11/Localizing-Visual-Sounds-the-Hard-Way ``model.py``): contrastive localisation with a hard-negative trimap.

An image encoder gives a feature map and an audio encoder (on a spectrogram, global max pooling) a vector, both
L2-normalised over channels (``xmodal.nn`` :class:`CNN2d` stands in for the two ResNet-18s). Their cosine map
``A`` is the localisation heatmap. The trimap splits it softly: ``Pos = sigmoid((A - 0.65) / 0.03)``,
``Neg = 1 - sigmoid((A - 0.4) / 0.03)``. The logits for InfoNCE at temperature 0.07 are, per clip: the mean of
``A`` over its own positive region (index 0, the target), the mean over the positive region of each other
clip's audio (the clip's own entry on that diagonal multiplied by ``1 - 100`` to push it out, as the reference),
and the mean over its own negative region (the hard negative, last).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.cnn import CNN2d

__all__ = ["LVSNet", "lvs_loss"]


class LVSNet(nn.Module):
    """``forward(image (N, 3, H, W), spectrogram (N, 1, F, T))`` -> ``{"heatmap": (N, h, w) cosine map,
    "logits": (N, N + 2), "pos": (N, h, w), "neg": (N, h, w)}``."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), audio_channels: Sequence[int] | None = None,
                 epsilon: float = 0.65, epsilon2: float = 0.4, tau: float = 0.03, temperature: float = 0.07,
                 trimap: bool = True, hard_negative: bool = True) -> None:
        super().__init__()
        audio_channels = tuple(channels) if audio_channels is None else tuple(audio_channels)
        if audio_channels[-1] != channels[-1]:
            raise ShapeError("the image and audio encoders must end with the same width", source="LVSNet")
        self.image_encoder = CNN2d(3, channels)
        self.audio_encoder = CNN2d(1, audio_channels)
        self.epsilon, self.epsilon2, self.tau, self.temperature = epsilon, epsilon2, tau, temperature
        self.trimap, self.hard_negative = trimap, hard_negative

    def forward(self, image: torch.Tensor, spectrogram: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.shape[0] != spectrogram.shape[0]:
            raise ShapeError(f"batch sizes differ: {tuple(image.shape)} and {tuple(spectrogram.shape)}", "LVSNet")
        img = F.normalize(self.image_encoder.forward_features(image)[0], dim=1)  # (N, C, h, w)
        aud = F.normalize(self.audio_encoder.forward_features(spectrogram)[0].amax(dim=(2, 3)), dim=1)  # (N, C)
        a_own = torch.einsum("nchw,nc->nhw", img, aud)  # each image with its own audio
        a_all = torch.einsum("nchw,kc->nkhw", img, aud)  # each image with every audio
        pos = torch.sigmoid((a_own - self.epsilon) / self.tau)
        neg = 1 - torch.sigmoid((a_own - (self.epsilon2 if self.trimap else self.epsilon)) / self.tau)
        pos_all = torch.sigmoid((a_all - self.epsilon) / self.tau)
        n = image.shape[0]
        own_mask = 1 - 100 * torch.eye(n, device=image.device, dtype=img.dtype)
        sim_pos = (pos * a_own).flatten(1).sum(-1) / pos.flatten(1).sum(-1)
        sim_other = (pos_all * a_all).flatten(2).sum(-1) / pos_all.flatten(2).sum(-1) * own_mask
        columns = [sim_pos[:, None], sim_other]
        if self.hard_negative:
            columns.append(((neg * a_own).flatten(1).sum(-1) / neg.flatten(1).sum(-1))[:, None])
        return {"heatmap": a_own, "logits": torch.cat(columns, dim=1) / self.temperature, "pos": pos, "neg": neg}


def lvs_loss(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy with the own positive region (column 0) as the target."""
    logits = outputs["logits"]
    return F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device))
