"""The class-tied evidence head of the AVE and AVVP models: hand-worked logits, the shapes it accepts inside
both models, and what tying buys: fitted on segments of some classes, it finds a class it never saw."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ShapeError
from xmodal.tasks.models.ave_attention import AVEAttentionNet
from xmodal.tasks.models.evidence import TiedEvidenceHead
from xmodal.tasks.models.han import HANParser


@pytest.fixture(autouse=True)
def seeded(one_torch_thread):
    torch.manual_seed(0)


def test_hand_worked_logits():
    head = TiedEvidenceHead(2, [2, -1, 0])  # class 0 reads column 2, class 1 (background) none, class 2 column 0
    with torch.no_grad():
        head.weight.copy_(torch.tensor([1.0, -2.0]))
        head.bias.copy_(torch.tensor([0.5, 0.25, 0.0]))
    evidence = torch.tensor([[1.0, 3.0, 5.0], [0.0, 1.0, 2.0]])  # (F=2, K=3)
    # class 0: 1 * 5 - 2 * 2 + 0.5 = 1.5; class 1: its bias 0.25; class 2: 1 * 1 - 2 * 0 + 0 = 1
    assert head(evidence).tolist() == [1.5, 0.25, 1.0]
    assert head(evidence.expand(4, 10, 2, 3)).shape == (4, 10, 3)
    with pytest.raises(ShapeError, match=r"\(\.\.\., 2, >= 3\)"):
        head(torch.zeros(2, 2))
    with pytest.raises(ShapeError, match="a column >= 0"):
        TiedEvidenceHead(2, [-1, -1])


def test_tied_head_finds_a_class_it_never_saw():
    """Segments whose evidence column of their class is high; training holds classes 0-3, the test class 4."""
    columns = [0, 1, 2, 3, 4, -1]  # five classes with evidence, background last
    def segments(classes: list[int], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.tensor(classes)[torch.randint(len(classes), (n,))]
        evidence = 0.1 * torch.rand(n, 1, 5)
        event = torch.rand(n) < 0.5
        evidence[event, 0, labels[event]] = 0.9
        return evidence, torch.where(event, labels, torch.tensor(5))
    x, y = segments([0, 1, 2, 3], 200)
    head = TiedEvidenceHead(1, columns)
    opt = torch.optim.Adam(head.parameters(), 0.1)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_test, y_test = segments([4], 100)
    assert (head(x_test).argmax(-1) == y_test).float().mean() == 1.0
    untied = torch.nn.Linear(5, 6)  # a per-class classifier on the same data never names class 4
    opt = torch.optim.Adam(untied.parameters(), 0.1)
    for _ in range(200):
        loss = torch.nn.functional.cross_entropy(untied(x[:, 0]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not (untied(x_test[:, 0]).argmax(-1) == 4).any()


def test_models_take_tied_evidence():
    ave = AVEAttentionNet(audio_dim=16, visual_dim=8, grid_cells=9, attention_dim=8, hidden=8, num_classes=4,
                          evidence_dim=3, evidence_columns=[0, 2, 1, -1])
    audio, visual = torch.randn(2, 10, 16), torch.randn(2, 10, 3, 3, 8)
    assert ave(audio, visual, evidence=torch.rand(2, 10, 3, 5))["logits"].shape == (2, 10, 4)
    with pytest.raises(ShapeError, match="evidence"):
        ave(audio, visual, evidence=torch.rand(2, 10, 15))
    han = HANParser(num_classes=4, audio_dim=16, visual_dim=8, motion_dim=8, dim=16, ff_dim=16, visual_pool=8,
                    evidence_dim=3, evidence_columns=[0, 1, 2, 3])
    evidence = torch.rand(2, 10, 3, 4)
    out = han(audio, torch.randn(2, 80, 8), torch.randn(2, 10, 8), evidence=evidence)
    assert out["frame_prob"].shape == (2, 10, 2, 4)
    with torch.no_grad():  # each modality's own head: audio reads the product, visual the third feature
        han.evidence_heads[0].weight.copy_(torch.tensor([100.0, 0, 0]))
        han.evidence_heads[1].weight.copy_(torch.tensor([0, 0, -100.0]))
    evidence = torch.zeros(2, 10, 3, 4)
    evidence[:, :, 0, 1] = 1.0
    evidence[:, :, 2, 3] = 1.0
    frame = han(audio, torch.randn(2, 80, 8), torch.randn(2, 10, 8), evidence=evidence)["frame_prob"]
    assert (frame[:, :, 0, 1] > 0.99).all() and (frame[:, :, 1, 3] < 0.01).all()
    with pytest.raises(ShapeError, match="evidence"):
        han(audio, torch.randn(2, 80, 8), torch.randn(2, 10, 8))
