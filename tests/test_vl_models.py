"""Reference vision-language models: they take the official feature shapes, and each overfits a tiny batch
(the loss falls and the task is solved on it). Losses against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from xmodal.metrics.retrieval import retrieval_metrics
from xmodal.nn.vl import (
    CTRL,
    EVE,
    MEE,
    SpaceTimeDecoder,
    TransVG,
    box_regression_loss,
    ctrl_loss,
    generalized_box_iou,
    max_margin_ranking_loss,
    stvg_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def _fit(model: torch.nn.Module, loss_fn, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = loss_fn()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, float(loss_fn().detach())


def test_giou_and_box_loss_hand_worked():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]])
    # overlap 1, union 7, hull 9; disjoint unit squares: IoU 0, union 2, hull 3
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([1 / 7 - 2 / 9, -1 / 3]))
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert float(box_regression_loss(boxes, boxes)["loss"]) == 0.0
    shifted = torch.tensor([[0.6, 0.5, 0.2, 0.4]])  # L1 0.1; IoU 0.1 * 0.4 / (0.16 - 0.04) = 1/3, hull = union
    out = box_regression_loss(shifted, boxes)
    assert float(out["l1"]) == pytest.approx(0.1) and float(out["giou"]) == pytest.approx(2 / 3)


def test_transvg_official_shapes_and_overfit():
    model = TransVG(visual_channels=256, text_dim=768, dim=32, depth=1, heads=4)
    out = model(torch.randn(2, 256, 20, 20), torch.randn(2, 20, 768), torch.ones(2, 20, dtype=torch.bool))
    assert out.shape == (2, 4) and bool(((out > 0) & (out < 1)).all())

    torch.manual_seed(0)
    small = TransVG(visual_channels=8, text_dim=16, dim=32, depth=2, heads=4, vocab_size=30, dropout=0.0)
    visual, ids = torch.randn(6, 8, 4, 4), torch.randint(1, 30, (6, 5))
    target = torch.rand(6, 4) * 0.5 + 0.25
    first, last = _fit(small, lambda: box_regression_loss(small(visual, ids), target)["loss"], 150)
    assert last < 0.1 * first


def test_ctrl_loss_hand_worked_and_overfit():
    # all-zero outputs: log 2 everywhere, weights 1 + 1/4 on the diagonal and 1/4 off it -> mean log 2 * 2 / 4
    out = ctrl_loss(torch.zeros(4, 4, 3), torch.zeros(4, 2))
    assert float(out["alignment"]) == pytest.approx(math.log(2) / 2) and float(out["regression"]) == 0.0
    official = CTRL()(torch.randn(3, 3 * 4096), torch.randn(3, 4800))
    assert official.shape == (3, 3, 3)

    torch.manual_seed(0)
    model = CTRL(visual_dim=24, sentence_dim=16, semantic_dim=32, hidden=64)
    clips, sentences, offsets = torch.randn(6, 24), torch.randn(6, 16), torch.randn(6, 2)
    first, last = _fit(model, lambda: ctrl_loss(model(clips, sentences), offsets, lambda_regression=1.0)["loss"],
                       300)
    assert last < 0.2 * first
    scores = model(clips, sentences)
    assert torch.equal(scores[..., 0].argmax(dim=1), torch.arange(6))  # each sentence picks its clip
    torch.testing.assert_close(scores[..., 1:].diagonal(dim1=0, dim2=1).T, offsets, atol=0.1, rtol=0)


def test_eve_official_shapes_and_overfit():
    model = EVE(visual_dim=2048, text_dim=300, dim=32, heads=4)
    assert model(torch.randn(2, 36, 2048), torch.randn(2, 12, 300)).shape == (2, 3)

    torch.manual_seed(0)
    small = EVE(visual_dim=16, text_dim=8, dim=32, heads=4, vocab_size=40, dropout=0.0)
    regions, ids = torch.randn(9, 5, 16), torch.randint(1, 40, (9, 7))
    mask = torch.ones(9, 7, dtype=torch.bool)
    mask[:3, 5:] = False
    labels = torch.arange(9) % 3
    first, last = _fit(small, lambda: torch.nn.functional.cross_entropy(small(regions, ids, mask), labels), 150)
    assert last < 0.05 * first
    assert torch.equal(small(regions, ids, mask).argmax(-1), labels)


def test_space_time_decoder_official_shapes_and_overfit():
    model = SpaceTimeDecoder(visual_channels=2048, text_dim=768, dim=32, encoder_depth=1, decoder_depth=1,
                             heads=4)
    time_mask = torch.tensor([[True] * 6 + [False] * 2])
    out = model(torch.randn(1, 8, 2048, 7, 7), torch.randn(1, 10, 768), time_mask=time_mask)
    assert out["boxes"].shape == (1, 8, 4) and out["sted"].shape == (1, 8, 2)
    assert bool(torch.isinf(out["sted"][0, 6:]).all())

    torch.manual_seed(0)
    small = SpaceTimeDecoder(visual_channels=8, text_dim=16, dim=32, encoder_depth=1, decoder_depth=2, heads=4,
                             dropout=0.0)
    frames, text = torch.randn(2, 6, 8, 3, 3), torch.randn(2, 4, 16)
    boxes = torch.rand(2, 6, 4) * 0.4 + 0.3
    span = torch.tensor([[1, 3], [2, 5]])
    first, last = _fit(small, lambda: stvg_loss(small(frames, text), boxes, span)["loss"], 200)
    assert last < 0.2 * first
    sted = small(frames, text)["sted"]
    assert torch.equal(sted[..., 0].argmax(1), span[:, 0]) and torch.equal(sted[..., 1].argmax(1), span[:, 1])


def test_mee_missing_experts_and_ranking():
    sim = torch.tensor([[1.0, 0.0], [0.9, 1.0]])
    # only (row 1, col 0) and, transposed, (row 0, col 1) violate the 0.2 margin, by 0.1 each; 2 negatives each way
    assert float(max_margin_ranking_loss(sim)) == pytest.approx(0.1)

    dims = {"appearance": 2048, "motion": 1024, "audio": 128, "face": 128}
    model = MEE(dims, text_dim=300, dim=32)
    experts = {n: torch.randn(3, d) for n, d in dims.items()}
    available = {n: torch.ones(3, dtype=torch.bool) for n in dims}
    available["face"] = torch.tensor([True, False, True])
    text = torch.randn(4, 300)
    s = model(text, experts, available)
    assert s.shape == (4, 3)
    experts["face"][1] = 100.0  # a missing expert's features must not matter
    torch.testing.assert_close(model(text, experts, available), s)

    torch.manual_seed(0)
    small = MEE({"appearance": 12, "audio": 6}, text_dim=10, dim=16)
    video = {"appearance": torch.randn(8, 12), "audio": torch.randn(8, 6)}
    captions = torch.randn(8, 10)
    first, last = _fit(small, lambda: max_margin_ranking_loss(small(captions, video)), 200)
    assert last < 0.1 * first
    assert retrieval_metrics(small(captions, video).detach())["R@1"] == 100.0


def test_boundary_regressor_official_shapes_and_overfit():
    from xmodal.nn.vl import BoundaryRegressor, boundary_loss

    model = BoundaryRegressor(video_dim=1024, text_dim=300, dim=32, heads=4)
    clip_mask = torch.ones(2, 64, dtype=torch.bool)
    clip_mask[1, 40:] = False  # a shorter video
    out = model(torch.randn(2, 64, 1024), torch.randn(2, 10, 300), clip_mask)
    assert out.shape == (2, 2) and bool((out[:, 0] <= out[:, 1]).all())
    # hand-worked loss: moment (0.2, 0.6) against (0.4, 0.6): overlap 0.2 of 0.4, smooth L1 0.5 * 0.2**2 / 2
    loss = boundary_loss(torch.tensor([[0.2, 0.6]]), torch.tensor([[0.4, 0.6]]))
    assert float(loss["tiou"]) == pytest.approx(0.5) and float(loss["l1"]) == pytest.approx(0.01)

    torch.manual_seed(0)
    small = BoundaryRegressor(video_dim=12, text_dim=8, dim=32, heads=4, vocab_size=20, dropout=0.0)
    clips, words = torch.randn(6, 16, 12), torch.randint(1, 20, (6, 5))
    starts = torch.rand(6) * 0.6
    target = torch.stack([starts, starts + 0.1 + torch.rand(6) * 0.3], dim=1)
    first, last = _fit(small, lambda: boundary_loss(small(clips, words), target)["loss"], 200)
    assert last < 0.2 * first
    with torch.no_grad():
        assert float(boundary_loss(small(clips, words), target)["tiou"]) > 0.8
