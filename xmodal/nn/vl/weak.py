"""Weakly supervised grounding by text-to-region attention, trained from image-expression pairs alone (no boxes),
as in contrastive phrase grounding (Gupta et al. 2020, "Contrastive Learning for Weakly Supervised Phrase
Grounding"): every cell of the image's feature map is compared with the expression (cosine of projected
features), the expression attends over the cells by a softmax of those similarities, and the image-expression
score is the attention-weighted mean similarity (a smooth maximum over the cells). InfoNCE over the batch makes
an expression match its own image better than the others. The attention over the map is the heatmap; its
maximum is the pointing-game point.

The cells' similarities are scored, not the similarity of an attention-pooled feature, because a pooled
feature's cosine is blind to how spread the attention is: a diffuse map could score as well as a sharp one
(on the scene data the two forms measured the same within the noise, see docs/tasks_vision_language.md). The loss
scores every expression against every image of the batch with the expression's own attention over that image,
so the attention pattern cannot carry the expression's identity: only the content it lands on can make the pair
match.
"""

from __future__ import annotations

import torch
from torch import nn

from xmodal.errors import ShapeError
from xmodal.nn.vl.ranking import PhraseAttention


class TextRegionAttention(nn.Module):
    """``visual (b, C, H, W)``, ``text (b, L, D)``, ``text_mask (b, L)`` -> heatmaps and image-expression scores;
    :meth:`similarities` scores any pairing of expressions and images."""

    def __init__(self, visual_channels: int, text_dim: int = 384, dim: int = 64, heads: int = 4,
                 sharpness: float = 10.0) -> None:
        super().__init__()
        # two coordinate channels (CoordConv) let a cell say where it is ("the dog on the left")
        self.cells = nn.Sequential(nn.Conv2d(visual_channels + 2, dim, kernel_size=1), nn.GELU(),
                                   nn.Conv2d(dim, dim, kernel_size=1))
        self.phrase = PhraseAttention(text_dim, dim, heads)
        self.log_sharpness = nn.Parameter(torch.tensor(float(sharpness)).log())  # inverse attention temperature

    def _coords(self, visual: torch.Tensor) -> torch.Tensor:
        b, _, h, w = visual.shape
        ys = torch.linspace(-1, 1, h, device=visual.device, dtype=visual.dtype)
        xs = torch.linspace(-1, 1, w, device=visual.device, dtype=visual.dtype)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)  # (2, H, W)
        return torch.cat([visual, grid.expand(b, -1, -1, -1)], dim=1)

    def similarities(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Cosine of every expression with every cell of every image: ``(n_txt, n_img, H*W)``."""
        if visual.dim() != 4:
            raise ShapeError(f"expected visual features (batch, C, H, W), got {tuple(visual.shape)}", "visual")
        cells = nn.functional.normalize(self.cells(self._coords(visual)).flatten(2), dim=1)  # (n_img, dim, P)
        phrases = nn.functional.normalize(self.phrase(text, text_mask), dim=-1)  # (n_txt, dim)
        return torch.einsum("td,idp->tip", phrases, cells)

    def forward(self, visual: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Paired rows: ``{"heatmap": (b, H, W)`` (each expression's attention over its own image, sums to 1),
        ``"scores": (b, b)`` (expression t against image i: the attention-weighted mean cosine),
        ``"similarity": (b, H*W)`` (each expression's cosine with the cells of its own image)}."""
        sims = self.similarities(visual, text, text_mask)  # (b_txt, b_img, P)
        attn = (sims * self.log_sharpness.exp()).softmax(-1)
        scores = (attn * sims).sum(-1)
        own = torch.arange(len(sims), device=visual.device)
        return {"heatmap": attn[own, own].reshape(-1, *visual.shape[2:]), "scores": scores,
                "similarity": sims[own, own]}


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


def referent_contrast_loss(similarity: torch.Tensor, attention: torch.Tensor, other_referent: torch.Tensor,
                           temperature: float = 0.1) -> torch.Tensor:
    """Hard negatives from the same image. ``similarity`` and ``attention`` ``(b, P)`` are each expression's
    cosines with its own image's cells and its attention over them; ``other_referent`` ``(b, b)`` bool marks
    pairs (t, t') showing one image where t' names another object. Expression t's cosines pooled by its own
    attention must beat those pooled by the attention of every such t' (cross-entropy over the candidates
    {t, t'...}); rows without such a t' do not count. Image-level contrast alone is met by attending to any
    object of the named class; this term asks that expressions of different objects of one image land on
    different cells. Zero (with gradients) when no row has a hard negative."""
    b = len(similarity)
    pooled = similarity @ attention.T  # [t, t'] = sum_p similarity_t[p] attention_t'[p]
    eye = torch.eye(b, dtype=torch.bool, device=similarity.device)
    logits = (pooled / temperature).masked_fill(~(other_referent | eye), float("-inf"))
    rows = other_referent.any(1)
    if not bool(rows.any()):
        return pooled.sum() * 0.0
    labels = torch.arange(b, device=similarity.device)
    return nn.functional.cross_entropy(logits[rows], labels[rows])
