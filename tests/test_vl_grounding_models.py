"""Grounding models: RoIAlign and MAttNet's location features against hand-worked values, the candidate ranker's
padding and permutation behaviour, and the weakly supervised attention and its InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.nn.vl import (
    CandidateRanker,
    TextRegionAttention,
    candidate_loss,
    image_expression_loss,
    roi_align,
)
from xmodal.nn.vl.ranking import location_features, relative_locations


def test_roi_align_of_a_linear_map_by_hand() -> None:
    # f = the column index: pixel j's centre lies at (j + 0.5) / 8, so bilinear sampling at u gives 8u - 0.5.
    # Box x in [0.25, 0.75], 2 bins of 2 samples: samples at 0.3125, 0.4375 | 0.5625, 0.6875 -> 2, 3 | 4, 5.
    feats = torch.arange(8.0).repeat(8, 1)[None, None]  # (1, 1, 8, 8)
    feats = torch.cat([feats, feats.transpose(2, 3)], dim=1)  # channel 1: the row index
    out = roi_align(feats, torch.tensor([[[0.25, 0.5, 0.75, 1.0]]]), output_size=2, samples=2)
    assert out.shape == (1, 1, 2, 2, 2)
    assert torch.allclose(out[0, 0, 0], torch.tensor([[2.5, 4.5], [2.5, 4.5]]))
    # box y in [0.5, 1.0]: samples at 0.5625, 0.6875 | 0.8125, 0.9375 -> 4, 5 | 6, 7 (the last one exactly on
    # the last pixel centre, so no border clamping)
    assert torch.allclose(out[0, 0, 1], torch.tensor([[4.5, 4.5], [6.5, 6.5]]))


def test_location_features_by_hand() -> None:
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 1.0, 0.75]]])
    assert torch.allclose(location_features(boxes)[0, 1], torch.tensor([0.5, 0.25, 1.0, 0.75, 0.25]))
    rel = relative_locations(boxes)  # (1, 2, 2, 5): box 1 seen from box 0 (centre 0.25, 0.25, size 0.5 x 0.5)
    assert torch.allclose(rel[0, 0, 1], torch.tensor([0.5, 0.0, 1.5, 1.0, 1.0]))
    assert torch.allclose(rel[0, 1, 0], torch.tensor([-1.5, -1.0, -0.5, 0.0, 1.0]))


def _ranker_inputs(k: int = 4):
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 10, 10)
    x1y1 = torch.rand(2, k, 2) * 0.5
    boxes = torch.cat([x1y1, x1y1 + 0.1 + torch.rand(2, k, 2) * 0.4], dim=-1)
    text, text_mask = torch.randn(2, 6, 12), torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    return feats, boxes, text, text_mask


def test_ranker_masks_padding_and_follows_a_permutation() -> None:
    model = CandidateRanker(8, text_dim=12, dim=16, text_heads=2).eval()
    feats, boxes, text, text_mask = _ranker_inputs()
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    logits = model(feats, boxes, mask, text, text_mask)
    assert logits.shape == (2, 4) and math.isinf(logits[1, 3].item()) and torch.isfinite(logits[0]).all()
    # padding never changes the real candidates' scores: row 1 equals the same image with three candidates
    three = model(feats[1:], boxes[1:, :3], mask[1:, :3], text[1:], text_mask[1:])
    assert torch.allclose(logits[1, :3], three[0], atol=1e-5)
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = model(feats[:1], boxes[:1, perm], mask[:1, perm], text[:1], text_mask[:1])
    assert torch.allclose(shuffled[0], logits[0, perm], atol=1e-5)
    loss = candidate_loss(logits, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and model.visual[1].weight.grad is not None


def test_weak_attention_heatmaps_and_loss_by_hand() -> None:
    model = TextRegionAttention(8, text_dim=12, dim=16, heads=2)
    feats, _, text, text_mask = _ranker_inputs()
    out = model(feats, text, text_mask)
    assert out["heatmap"].shape == (2, 10, 10) and out["scores"].shape == (2, 2)
    assert torch.allclose(out["heatmap"].sum((1, 2)), torch.ones(2))
    # symmetric InfoNCE on [[1, 0], [0, 1]] at temperature 1: both directions -log(e / (e + 1))
    eye = torch.eye(2)
    assert image_expression_loss(eye, 1.0).item() == pytest.approx(-math.log(math.e / (math.e + 1)))
    # two rows of one image are not negatives of each other: nothing is left to contrast
    same = torch.ones(2, 2, dtype=torch.bool)
    assert image_expression_loss(eye, 1.0, same).item() == pytest.approx(0.0)
