"""Reference audio-visual models: their inputs follow the official feature shapes, their outputs the shapes the
official losses and evaluations expect, and each overfits a tiny batch with its reference objective."""

from __future__ import annotations

import pytest
import torch

from xmodal.errors import ShapeError
from xmodal.metrics.avvp import avvp_postprocess
from xmodal.tasks.models.ave_attention import AVEAttentionNet, ave_loss
from xmodal.tasks.models.avst import AVST, avst_loss
from xmodal.tasks.models.han import HANParser, han_loss
from xmodal.tasks.models.lvs import LVSNet, lvs_loss


@pytest.fixture(autouse=True)
def seeded(one_torch_thread):  # tiny models: one thread (see tests/conftest.py)
    torch.manual_seed(0)


def _fit(model, step, steps: int, lr: float) -> float:
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        loss = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def test_ave_official_shapes():
    model = AVEAttentionNet()
    out = model(torch.randn(2, 10, 128), torch.randn(2, 10, 7, 7, 512))
    assert out["logits"].shape == (2, 10, 29) and out["attention"].shape == (2, 10, 49)
    assert torch.allclose(out["attention"].sum(-1), torch.ones(2, 10))
    with pytest.raises(ShapeError, match="H \\* W = 49"):
        model(torch.randn(2, 10, 128), torch.randn(2, 10, 6, 6, 512))
    with_acoustic = AVEAttentionNet(acoustic_dim=12)
    assert with_acoustic(torch.randn(1, 10, 128), torch.randn(1, 10, 7, 7, 512),
                         torch.randn(1, 10, 12))["logits"].shape == (1, 10, 29)
    with pytest.raises(ShapeError, match="acoustic"):
        with_acoustic(torch.randn(1, 10, 128), torch.randn(1, 10, 7, 7, 512))


def test_ave_overfits_a_tiny_batch():
    model = AVEAttentionNet(audio_dim=16, visual_dim=8, grid_cells=9, attention_dim=16, hidden=16, num_classes=5,
                            head_hidden=16)
    audio, visual = torch.randn(4, 10, 16), torch.randn(4, 10, 3, 3, 8)
    labels = torch.randint(0, 5, (4, 10))
    with torch.no_grad():
        start = float(ave_loss(model(audio, visual)["logits"], labels))
    # The reference loss is a soft margin on softmax outputs, so it stays above ~0.6: check its drop and accuracy.
    end = _fit(model, lambda: ave_loss(model(audio, visual)["logits"], labels), 60, 1e-2)
    assert end < start - 0.05
    assert (model(audio, visual)["logits"].argmax(-1) == labels).all()


def test_han_official_shapes_and_postprocess():
    model = HANParser()
    with torch.no_grad():
        out = model(torch.randn(2, 10, 128), torch.randn(2, 80, 2048), torch.randn(2, 10, 512))
    assert out["frame_prob"].shape == (2, 10, 2, 25)
    assert all(out[k].shape == (2, 25) for k in ("video_prob", "audio_prob", "visual_prob"))
    assert 0 <= float(out["video_prob"].min()) and float(out["video_prob"].max()) <= 1
    frame = out["frame_prob"].numpy()
    pred_a, pred_v = avvp_postprocess(frame[0, :, 0], frame[0, :, 1], out["video_prob"][0].numpy())
    assert pred_a.shape == pred_v.shape == (25, 10)
    with pytest.raises(ShapeError, match="T\\*8"):
        model(torch.randn(2, 10, 128), torch.randn(2, 10, 2048), torch.randn(2, 10, 512))


def test_han_overfits_video_labels():
    model = HANParser(num_classes=6, audio_dim=16, visual_dim=32, motion_dim=8, dim=32, ff_dim=32, dropout=0.0,
                      layers=2)
    audio, visual, motion = torch.randn(4, 10, 16), torch.randn(4, 80, 32), torch.randn(4, 10, 8)
    labels = (torch.rand(4, 6) < 0.4).float()
    labels[0, 0] = 1.0
    _fit(model, lambda: han_loss(model(audio, visual, motion), labels), 100, 3e-3)
    assert ((model(audio, visual, motion)["video_prob"] >= 0.5).float() == labels).all()


def test_lvs_shapes_and_overfit():
    model = LVSNet(channels=(8, 16, 32))
    image, spectrogram = torch.randn(4, 3, 56, 56), torch.randn(4, 1, 64, 32)
    with torch.no_grad():
        out = model(image, spectrogram)
    assert out["heatmap"].shape == (4, 14, 14) and out["logits"].shape == (4, 4 + 2)
    assert float(out["heatmap"].abs().max()) <= 1 + 1e-6  # a cosine map
    assert LVSNet(channels=(8, 16, 32), hard_negative=False)(image, spectrogram)["logits"].shape == (4, 5)
    start = float(lvs_loss(out))
    end = _fit(model, lambda: lvs_loss(model(image, spectrogram)), 40, 1e-3)
    assert end < 0.2 * start
    assert (model(image, spectrogram)["logits"].argmax(1) == 0).all()


def test_avst_official_shapes():
    model = AVST(vocab_size=93)
    with torch.no_grad():
        out = model(torch.randn(2, 10, 128), torch.randn(2, 10, 512, 14, 14), torch.randint(0, 93, (2, 14)))
    assert out["answer_logits"].shape == (2, 42)
    assert out["match_positive"].shape == out["match_negative"].shape == (20, 2)
    assert out["spatial_attention"].shape == (2, 10, 196)
    assert torch.allclose(out["spatial_attention"].sum(-1), torch.ones(2, 10))
    with pytest.raises(ShapeError, match="visual_negative"):
        model(torch.randn(1, 10, 128), torch.randn(1, 10, 512, 14, 14), torch.randint(0, 93, (1, 14)))


def test_avst_overfits_answers_and_matching():
    model = AVST(vocab_size=20, num_answers=5, audio_dim=16, visual_dim=8, dim=32, heads=2)
    audio, visual = torch.randn(4, 4, 16), torch.randn(4, 4, 8, 3, 3)
    question, answers = torch.randint(1, 20, (4, 6)), torch.tensor([0, 1, 2, 3])
    _fit(model, lambda: avst_loss(model(audio, visual, question), answers), 60, 3e-3)
    with torch.no_grad():
        out = model(audio, visual, question)
    assert (out["answer_logits"].argmax(1) == answers).all()
    assert (out["match_positive"].argmax(1) == 1).float().mean() > 0.9
    assert (out["match_negative"].argmax(1) == 0).float().mean() > 0.9
