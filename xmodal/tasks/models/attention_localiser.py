"""Attention-based sound source localisation (Senocak et al., "Learning to Localize Sound Source in Visual
Scenes", CVPR 2018): the sound guides an attention over the spatial visual map.

A visual encoder gives a map of local features ``h_i`` (``xmodal.nn`` :class:`CNN2d` stands in for VGG-16's
conv5) and a sound encoder a vector ``f_s`` (a CNN over the log-mel spectrogram, global max pooling, then a
fully connected layer: the paper's SoundNet + fc). The attention is a softmax over the map positions of the
cosine ``<h_i, f_s>``; the attended visual vector ``z = sum_i alpha_i h_i`` goes through two fully connected
layers to ``f_v``, in the space of ``f_s``.

Training, as the paper:

- unsupervised: a triplet (``f_s``, ``f_v+`` of the clip's own frame, ``f_v-`` of another clip's frame attended
  with the same sound) with the distance-ratio loss ``||(d+, d- - 1)||^2``,
  ``d+- = exp(||f_s - f_v+-||) / (exp(||f_s - f_v+||) + exp(||f_s - f_v-||))``;
- supervised: the cross-entropy ``-sum_i alpha_gt_i log alpha_i`` of the attention against the ground-truth box
  map (normalised to sum 1);
- semi-supervised: the sum, the supervised term weighted by ``supervised_weight``.

The softmax runs on ``cosine / temperature``; ``temperature = 1`` is the paper's literal form, whose attention
over a few hundred positions of values in [-1, 1] stays almost uniform, so the default sharpens it. As options
beyond the paper: ``acoustic_dim > 0`` adds a projection of acoustic descriptors (:mod:`xmodal.data.acoustic`)
to the sound vector, and :func:`attention_loss` with a ``sounding`` mask keeps silent clips out of the triplet
and the supervised term and pushes their peak cosine (``score``) below zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, ShapeError
from xmodal.nn.encoders.cnn import CNN2d
from xmodal.tasks.models.lvs import FeatureEncoder

__all__ = ["AttentionLocaliser", "attention_loss"]


class AttentionLocaliser(nn.Module):
    """``forward(image (N, 3, H, W), spectrogram (N, 1, F, T), acoustic (N, acoustic_dim) | None)`` ->
    ``{"heatmap": (N, h, w) attention, "cosine": (N, h, w), "sound": (N, D), "visual_pos": (N, D),
    "visual_neg": (N, D), "score": (N,) peak cosine}``; the negative frame of clip i is clip i + 1's (mod N)."""

    image_encoder: FeatureEncoder
    audio_encoder: FeatureEncoder

    def __init__(self, channels: Sequence[int] = (32, 64, 128, 256), audio_channels: Sequence[int] | None = None,
                 embed_dim: int = 128, temperature: float = 0.1, acoustic_dim: int = 0,
                 image_encoder: FeatureEncoder | None = None, audio_encoder: FeatureEncoder | None = None) -> None:
        super().__init__()
        audio_channels = tuple(channels) if audio_channels is None else tuple(audio_channels)
        if audio_channels[-1] != channels[-1]:
            raise ShapeError("the image and audio encoders must end with the same width", "AttentionLocaliser")
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        width = channels[-1]
        # either encoder may be injected: any module whose forward_features(x) gives ((N, channels[-1], ...), _)
        self.image_encoder = image_encoder if image_encoder is not None else CNN2d(3, channels)
        self.audio_encoder = audio_encoder if audio_encoder is not None else CNN2d(1, audio_channels)
        self.sound_fc = nn.Linear(width, width)
        self.visual_fc = nn.Sequential(nn.Linear(width, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.sound_embed = nn.Linear(width, embed_dim)
        self.acoustic_dim = acoustic_dim
        self.acoustic = nn.Linear(acoustic_dim, width) if acoustic_dim else None
        self.temperature = temperature

    def _attend(self, local: torch.Tensor, sound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention ``(N, h, w)``, cosine map ``(N, h, w)`` and attended vector ``(N, C)`` of maps ``(N, C, h, w)``
        guided by sound vectors ``(N, C)``."""
        cosine = torch.einsum("nchw,nc->nhw", F.normalize(local, dim=1), F.normalize(sound, dim=1))
        alpha = (cosine / self.temperature).flatten(1).softmax(-1).view_as(cosine)
        return alpha, cosine, torch.einsum("nchw,nhw->nc", local, alpha)

    def forward(self, image: torch.Tensor, spectrogram: torch.Tensor,
                acoustic: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n = image.shape[0]
        if spectrogram.shape[0] != n:
            raise ShapeError(f"batch sizes differ: {tuple(image.shape)} and {tuple(spectrogram.shape)}",
                             "AttentionLocaliser")
        local = self.image_encoder.forward_features(image)[0]  # (N, C, h, w)
        pooled = self.audio_encoder.forward_features(spectrogram)[0].amax(dim=(2, 3))  # (N, C)
        if self.acoustic is not None:
            if acoustic is None or acoustic.shape != (n, self.acoustic_dim):
                got = None if acoustic is None else tuple(acoustic.shape)
                raise ShapeError(f"acoustic: expected ({n}, {self.acoustic_dim}), got {got}", "AttentionLocaliser")
            pooled = pooled + self.acoustic(acoustic)
        sound = self.sound_fc(F.relu(pooled))  # f_s before the embedding: guides the attention
        alpha, cosine, z_pos = self._attend(local, sound)
        _, _, z_neg = self._attend(local.roll(-1, dims=0), sound)  # another clip's frame, the same sound
        return {"heatmap": alpha, "cosine": cosine, "sound": self.sound_embed(sound),
                "visual_pos": self.visual_fc(z_pos), "visual_neg": self.visual_fc(z_neg),
                "score": cosine.flatten(1).amax(-1)}


def triplet_ratio_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The distance-ratio triplet loss ``(d+)^2 + (d- - 1)^2`` per row (Hoffer and Ailon, as Senocak et al.)."""
    dist = torch.stack([(anchor - positive).norm(dim=-1), (anchor - negative).norm(dim=-1)], -1)
    d = dist.softmax(-1)  # exp(||.||) / (exp(||+||) + exp(||-||))
    return d[:, 0].square() + (d[:, 1] - 1).square()


def attention_loss(outputs: dict[str, torch.Tensor], target: torch.Tensor | None = None,
                   mode: str = "unsupervised", supervised_weight: float = 1.0,
                   sounding: torch.Tensor | None = None, silent_weight: float = 1.0) -> torch.Tensor:
    """The paper's objective: ``mode`` unsupervised (triplet), supervised (attention cross-entropy against
    ``target``, a ``(N, H, W)`` box mask at any resolution, pooled to the map's) or semi (their sum, the
    supervised term weighted). ``sounding`` (N,) bool: silent clips leave both terms and add
    ``silent_weight x relu(score)``."""
    if mode not in ("unsupervised", "supervised", "semi"):
        raise ConfigError(f"mode must be unsupervised, supervised or semi, got {mode!r}")
    alpha = outputs["heatmap"]
    keep = torch.ones(alpha.shape[0], dtype=torch.bool, device=alpha.device) if sounding is None else sounding.bool()
    loss = alpha.new_zeros(())
    if keep.any():
        if mode in ("unsupervised", "semi"):
            loss = loss + triplet_ratio_loss(outputs["sound"][keep], outputs["visual_pos"][keep],
                                             outputs["visual_neg"][keep]).mean()
        if mode in ("supervised", "semi"):
            if target is None:
                raise ConfigError(f"mode {mode!r} needs ground-truth box maps")
            gt = F.adaptive_avg_pool2d(target[keep].float()[:, None], (alpha.shape[-2], alpha.shape[-1]))[:, 0].flatten(1)
            gt = gt / gt.sum(-1, keepdim=True).clamp_min(1e-12)
            ce = -(gt * alpha[keep].flatten(1).clamp_min(1e-12).log()).sum(-1).mean()
            loss = loss + (supervised_weight if mode == "semi" else 1.0) * ce
    if sounding is not None and (~keep).any():
        loss = loss + silent_weight * F.relu(outputs["score"][~keep]).mean()
    # every output stays in the graph (weight 0) whichever terms ran, as DistributedDataParallel requires
    unused = sum(outputs[k].sum() for k in ("sound", "visual_pos", "visual_neg", "score"))
    return loss + 0.0 * unused
