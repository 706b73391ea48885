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

``tau_plus > 0`` replaces the InfoNCE sum over the other clips by the debiased estimator of Chuang et al.
("Debiased Contrastive Learning", NeurIPS 2020, eq. 6): with ``M = N - 1`` other clips, logits ``s_j``, positive
logit ``s_+`` and ``t`` the temperature,
``g = max((mean_j exp(s_j) - tau_plus exp(s_+)) / (1 - tau_plus), exp(-1 / t))``, and the row's loss is
``-log(exp(s_+) / (exp(s_+) + M g + exp(s_hard)))``. ``tau_plus`` is the prior probability that another clip is
a false negative: in a frame of several objects, another clip whose sound is one of this frame's silent objects
scores as high as the true pair, and plain InfoNCE pushes that correct response down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.nn.encoders.cnn import CNN2d

__all__ = ["FeatureEncoder", "LVSNet", "debiased_nce", "lvs_loss"]


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


def debiased_nce(logits: torch.Tensor, tau_plus: float, temperature: float) -> torch.Tensor:
    """Per-row debiased contrastive loss (module docstring) of the LVS logits of an ``N``-clip batch,
    ``(N, N + 2)`` (column 0 the positive, ``1 .. N`` the clips' audio, the row's own column ``1 + row`` left
    out, the last the hard negative) or ``(N, N + 1)`` without the hard negative. ``(N,)``."""
    if not 0.0 <= tau_plus < 1.0:
        raise ConfigError(f"tau_plus must be in [0, 1), got {tau_plus}")
    n = logits.shape[0]
    hard = logits.shape[1] - 1 - n
    if hard not in (0, 1):
        raise ShapeError(f"logits of {n} clips must be ({n}, {n + 1}) or ({n}, {n + 2}), got {tuple(logits.shape)}",
                         source="lvs_loss")
    if n < 2:
        raise ShapeError(f"the debiased estimator needs two clips or more, got {n}", source="lvs_loss")
    own = torch.eye(n, dtype=torch.bool, device=logits.device)
    used = torch.cat([logits[:, :1], logits[:, 1:n + 1].masked_fill(own, -torch.inf), logits[:, n + 1:]], 1)
    # shifted by each row's largest used logit (no gradient through the shift): exp stays finite at any temperature
    shift = used.detach().amax(-1, keepdim=True)
    pos = (logits[:, :1] - shift).exp()
    others = (used[:, 1:n + 1] - shift).exp()
    g = (others.sum(-1, keepdim=True) / (n - 1) - tau_plus * pos) / (1 - tau_plus)
    g = torch.maximum(g, (-1 / temperature - shift).exp())
    denom = pos + (n - 1) * g
    if hard:
        denom = denom + (logits[:, -1:] - shift).exp()
    return (denom.log() - (logits[:, :1] - shift))[:, 0]


def lvs_loss(outputs: dict[str, torch.Tensor], sounding: torch.Tensor | None = None,
             silent_weight: float = 1.0, tau_plus: float = 0.0, temperature: float = 0.07) -> torch.Tensor:
    """Cross-entropy with the own positive region (column 0) as the target, or with ``tau_plus > 0`` the
    debiased estimator (:func:`debiased_nce`; ``temperature`` is the model's, for its lower bound). With
    ``sounding`` (N,) bool, only sounding clips are rows, and each silent clip adds ``silent_weight`` x the mean of
    its ``Pos`` map."""
    logits = outputs["logits"]
    keep = (torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device) if sounding is None
            else sounding.bool())
    loss = logits.new_zeros(())
    if keep.any():
        if tau_plus > 0:
            # every clip is a row first (its own column is 1 + its index), the silent ones dropped after
            loss = loss + debiased_nce(logits, tau_plus, temperature)[keep].mean()
        else:
            rows = logits[keep]
            loss = loss + F.cross_entropy(rows, torch.zeros(rows.shape[0], dtype=torch.long, device=logits.device))
    if sounding is None:
        return loss
    silent = outputs["pos"][~keep]
    if silent.shape[0]:
        loss = loss + silent_weight * silent.flatten(1).mean(-1).mean()
    return loss + 0.0 * logits.sum()  # the logits stay in the graph in an all-silent batch (DDP needs them)
