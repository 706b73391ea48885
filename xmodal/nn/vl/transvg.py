"""TransVG-style visual grounding (Deng et al. 2021): visual tokens from a feature map and text tokens are
projected to one width, a learnable [REG] token is prepended, a Transformer fuses all of them, and the [REG]
output regresses the box (normalised cx, cy, w, h). Train with :func:`xmodal.nn.vl.boxes.box_regression_loss`.

Inputs as the official pipeline produces them: ``visual`` ``(batch, C, H, W)`` (ResNet-50 C5 after DETR's
encoder: 256 x 20 x 20 at 640 px; raw C5: 2048 channels), ``text`` ``(batch, L, D)`` token features (BERT: 768,
L = 20 on RefCOCO) or ``(batch, L)`` token ids with ``vocab_size``; ``text_mask`` ``(batch, L)`` True = valid.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.encoders.transformer import TransformerEncoder
from xmodal.nn.heads import BoxHead


class TransVG(nn.Module):
    def __init__(self, visual_channels: int = 256, text_dim: int = 768, dim: int = 256, depth: int = 6,
                 heads: int = 8, max_visual_tokens: int = 400, max_text_tokens: int = 40,
                 vocab_size: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        self.visual_proj = nn.Conv2d(visual_channels, dim, kernel_size=1)
        self.text_embed = nn.Embedding(vocab_size, text_dim, padding_idx=0) if vocab_size else None
        self.text_proj = nn.Linear(text_dim, dim)
        # modality embeddings tell the fusion which stream a position comes from (TransVG's separate positions)
        self.visual_pos = nn.Parameter(torch.randn(1, max_visual_tokens, dim) * 0.02)
        self.text_pos = nn.Parameter(torch.randn(1, max_text_tokens, dim) * 0.02)
        self.fusion = TransformerEncoder(dim=dim, depth=depth, heads=heads, max_len=max_visual_tokens
                                         + max_text_tokens, positions="none", cls_token=True, pool="cls",
                                         dropout=dropout)  # the CLS token is the [REG] token
        self.head = BoxHead(dim, hidden=dim)

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None,
                visual_mask: torch.Tensor | None = None) -> torch.Tensor:
        """-> ``(batch, 4)`` boxes (cx, cy, w, h) in [0, 1] of the image."""
        if visual.dim() != 4:
            raise ShapeError(f"expected visual features (batch, C, H, W), got {tuple(visual.shape)}", "visual")
        v = self.visual_proj(visual).flatten(2).transpose(1, 2)  # (b, H*W, dim)
        t = self.text_embed(text) if self.text_embed is not None else text
        if t.dim() != 3 or t.shape[0] != v.shape[0]:
            raise ShapeError(f"expected text (batch, L, D) or ids (batch, L), got {tuple(text.shape)}", "text")
        if v.shape[1] > self.visual_pos.shape[1] or t.shape[1] > self.text_pos.shape[1]:
            raise ShapeError(f"{v.shape[1]} visual / {t.shape[1]} text tokens exceed the model's "
                             f"{self.visual_pos.shape[1]} / {self.text_pos.shape[1]}", "tokens")
        t = self.text_proj(t)
        v = v + self.visual_pos[:, : v.shape[1]]
        t = t + self.text_pos[:, : t.shape[1]]
        b = v.shape[0]
        vm = torch.ones(b, v.shape[1], dtype=torch.bool, device=v.device) if visual_mask is None else visual_mask
        tm = torch.ones(b, t.shape[1], dtype=torch.bool, device=v.device) if text_mask is None else text_mask
        _, reg = self.fusion.forward_all(torch.cat([v, t], dim=1), torch.cat([vm, tm], dim=1).bool())
        return self.head(reg)
