"""Weakly supervised grounding by text-to-region attention, trained from image-expression pairs alone (no boxes),
as in contrastive phrase grounding (Gupta et al. 2020, "Contrastive Learning for Weakly Supervised Phrase
Grounding"): the expression attends over the cells of the image's feature map, the attended visual feature is
matched with the expression, and InfoNCE over the batch makes an expression match its own image better than the
others. The attention over the map is the heatmap; its maximum is the pointing-game point.

The loss scores every expression against every image of the batch with the expression's own attention over that
image, so the attention pattern cannot carry the expression's identity: only the content it lands on can make
the pair match.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.vl.ranking import PhraseAttention


class TextRegionAttention(nn.Module):
    """``visual (b, C, H, W)``, ``text (b, L, D)``, ``text_mask (b, L)`` -> phrase ``(b, dim)`` and, through
    :meth:`attend`, heatmaps and attended features of any image-expression pairing."""

    def __init__(self, visual_channels: int, text_dim: int = 384, dim: int = 64, heads: int = 4) -> None:
        super().__init__()
        # two coordinate channels (CoordConv) let a cell's key say where it is ("the dog on the left")
        self.key = nn.Conv2d(visual_channels + 2, dim, kernel_size=1)
        self.value = nn.Sequential(nn.Conv2d(visual_channels, dim, kernel_size=1), nn.GELU(),
                                   nn.Conv2d(dim, dim, kernel_size=1))
        self.phrase = PhraseAttention(text_dim, dim, heads)
        self.query = nn.Linear(dim, dim)
        self.dim = dim

    def _coords(self, visual: torch.Tensor) -> torch.Tensor:
        b, _, h, w = visual.shape
        ys = torch.linspace(-1, 1, h, device=visual.device, dtype=visual.dtype)
        xs = torch.linspace(-1, 1, w, device=visual.device, dtype=visual.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)  # (2, H, W)
        return torch.cat([visual, grid.expand(b, -1, -1, -1)], dim=1)

    def encode(self, visual: torch.Tensor, text: torch.Tensor,
               text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> keys ``(b, H*W, dim)``, values ``(b, H*W, dim)``, phrases ``(b, dim)``."""
        if visual.dim() != 4:
            raise ShapeError(f"expected visual features (batch, C, H, W), got {tuple(visual.shape)}", "visual")
        keys = self.key(self._coords(visual)).flatten(2).transpose(1, 2)
        values = self.value(visual).flatten(2).transpose(1, 2)
        return keys, values, self.phrase(text, text_mask)

    def attend(self, keys: torch.Tensor, values: torch.Tensor,
               phrases: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every phrase over every image: ``keys``/``values`` ``(n_img, P, dim)``, ``phrases`` ``(n_txt, dim)`` ->
        attention ``(n_txt, n_img, P)`` and attended features ``(n_txt, n_img, dim)``."""
        q = self.query(phrases)
        attn = (torch.einsum("td,ipd->tip", q, keys) / self.dim ** 0.5).softmax(-1)
        return attn, torch.einsum("tip,ipd->tid", attn, values)

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Paired rows: ``{"heatmap": (b, H, W)`` (each expression's attention over its own image, sums to 1),
        ``"scores": (b, b)`` (expression t against image i, cosine), ``"phrase"``, ``"region"`` ``(b, dim)``}."""
        keys, values, phrases = self.encode(visual, text, text_mask)
        attn, attended = self.attend(keys, values, phrases)
        scores = nn.functional.cosine_similarity(attended, phrases[:, None], dim=-1)  # (b_txt, b_img)
        own = torch.arange(len(phrases), device=visual.device)
        return {"heatmap": attn[own, own].reshape(-1, *visual.shape[2:]), "scores": scores, "phrase": phrases,
                "region": attended[own, own]}


def image_expression_loss(scores: torch.Tensor, temperature: float = 0.1,
                          same_image: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE on ``scores`` ``(b, b)`` (expression t, image i; the diagonal pairs are positives).
    ``same_image`` ``(b, b)`` bool marks off-diagonal pairs that show the same image: they are not negatives."""
    logits = scores / temperature
    if same_image is not None:
        off = same_image & ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
        logits = logits.masked_fill(off, float("-inf"))
    labels = torch.arange(len(scores), device=scores.device)
    return (nn.functional.cross_entropy(logits, labels) + nn.functional.cross_entropy(logits.T, labels)) / 2
