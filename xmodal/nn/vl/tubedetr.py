"""A TubeDETR-style space-time decoder (Yang et al. 2022, antoyang/TubeDETR ``models/tubedetr.py``) for
spatio-temporal video grounding: each sampled frame's visual tokens are encoded jointly with the sentence's
tokens, then one time-aligned query per frame alternates temporal self-attention over the frames with
cross-attention into its own frame's memory; the queries give a box per frame and start/end logits.

Inputs: ``frames`` ``(batch, T, C, H, W)`` per-frame feature maps (ResNet-101 C5: 2048 x H/32 x W/32),
``text`` ``(batch, L, D)`` token features (RoBERTa: 768), ``text_mask`` ``(batch, L)`` and ``time_mask``
``(batch, T)`` True = valid. Train with :func:`stvg_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.transformer import TransformerEncoder, sinusoidal_positions
from xmodal.nn.fusion import CrossModalAttention
from xmodal.nn.heads import BoxHead
from xmodal.nn.vl.boxes import box_regression_loss


class _DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.temporal = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross = CrossModalAttention(dim, dim, heads, dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                time_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = q.shape
        h = self.norm(q)
        q = q + self.temporal(h, h, h, key_padding_mask=~time_mask, need_weights=False)[0]
        # query t looks only at frame t's memory: fold time into the batch
        out = self.cross(q.reshape(b * t, 1, d), memory, memory_mask)
        return out.reshape(b, t, d)


class SpaceTimeDecoder(nn.Module):
    time_pos: torch.Tensor

    def __init__(self, visual_channels: int = 2048, text_dim: int = 768, dim: int = 256, encoder_depth: int = 2,
                 decoder_depth: int = 3, heads: int = 8, max_tokens: int = 512, max_frames: int = 200,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.visual_proj = nn.Conv2d(visual_channels, dim, kernel_size=1)
        self.text_proj = nn.Linear(text_dim, dim)
        self.encoder = TransformerEncoder(dim=dim, depth=encoder_depth, heads=heads, max_len=max_tokens,
                                          dropout=dropout)
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("time_pos", sinusoidal_positions(max_frames, dim)[None], persistent=False)
        self.layers = nn.ModuleList(_DecoderLayer(dim, heads, dropout) for _ in range(decoder_depth))
        self.norm = nn.LayerNorm(dim)
        self.box = BoxHead(dim, hidden=dim)
        self.sted = nn.Linear(dim, 2)
        self.max_frames = max_frames

    def forward(self, frames: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None,
                time_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """-> ``{"boxes": (batch, T, 4) cx, cy, w, h in [0, 1], "sted": (batch, T, 2) start/end logits}``,
        padded frames' logits at -inf."""
        if frames.dim() != 5 or text.dim() != 3 or frames.shape[0] != text.shape[0]:
            raise ShapeError(f"expected frames (batch, T, C, H, W) and text (batch, L, D), got "
                             f"{tuple(frames.shape)} and {tuple(text.shape)}", "SpaceTimeDecoder")
        b, t = frames.shape[:2]
        if t > self.max_frames:
            raise ShapeError(f"{t} frames exceed max_frames={self.max_frames}", "frames")
        dev = frames.device
        tm = torch.ones(b, t, dtype=torch.bool, device=dev) if time_mask is None else time_mask.bool()
        xm = torch.ones(text.shape[:2], dtype=torch.bool, device=dev) if text_mask is None else text_mask.bool()
        v = self.visual_proj(frames.flatten(0, 1)).flatten(2).transpose(1, 2)  # (b*t, H*W, dim)
        s = self.text_proj(text).repeat_interleave(t, dim=0)  # (b*t, L, dim)
        tokens = torch.cat([v, s], dim=1)
        mask = torch.cat([torch.ones(v.shape[:2], dtype=torch.bool, device=dev), xm.repeat_interleave(t, 0)], 1)
        memory, _ = self.encoder.forward_all(tokens, mask)  # (b*t, H*W + L, dim)
        q = self.query.expand(b, t, -1) + self.time_pos[:, :t]
        for layer in self.layers:
            q = layer(q, memory, mask, tm)
        q = self.norm(q)
        sted = self.sted(q).masked_fill(~tm[..., None], float("-inf"))
        return {"boxes": self.box(q), "sted": sted}


def stvg_loss(outputs: dict[str, torch.Tensor], boxes: torch.Tensor, span: torch.Tensor,
              time_mask: torch.Tensor | None = None, sigma: float = 1.0, bbox_weight: float = 5.0,
              giou_weight: float = 2.0, sted_weight: float = 10.0) -> dict[str, torch.Tensor]:
    """TubeDETR's losses with its default weights: L1 + GIoU on the frames inside the true span, and its
    KL(prediction || target) between the softmax of the start (end) logits and a Gaussian of ``sigma`` frames
    around the true start (end). ``boxes`` (batch, T, 4) true (cx, cy, w, h), read only inside ``span``
    (batch, 2) = first and last frame index of the tube, inclusive."""
    pred_boxes, sted = outputs["boxes"], outputs["sted"]
    b, t = sted.shape[:2]
    tm = torch.ones(b, t, dtype=torch.bool, device=sted.device) if time_mask is None else time_mask.bool()
    frame = torch.arange(t, device=sted.device)[None, :]
    inside = (frame >= span[:, :1]) & (frame <= span[:, 1:]) & tm  # (b, t)
    box = box_regression_loss(pred_boxes[inside], boxes[inside], bbox_weight, giou_weight)
    eps = 1e-6  # TubeDETR's guard against log(0)
    logits = sted.masked_fill(~tm[..., None], -1e32)
    kl = torch.zeros((), device=sted.device)
    for k in range(2):
        target = (-((frame - span[:, k: k + 1]) ** 2) / (2 * sigma**2)).exp()
        target = F.normalize(target + eps, p=1, dim=1)
        prob = logits[..., k].softmax(dim=1)
        kl = kl + ((prob * ((prob + eps) / target).log()) * tm).mean()
    return {"loss": box["loss"] + sted_weight * kl, "l1": box["l1"], "giou": box["giou"], "sted": kl}
