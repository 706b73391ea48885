"""Fusion, heads and model compositions: shapes, masks, and LMF against the full tensor fusion it factorises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError, MissingModalityError, ShapeError
from xmodal.nn.encoders.cnn import CNN1d, CNN2d
from xmodal.nn.fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    CrossModalAttention,
    GatedFusion,
    LowRankFusion,
)
from xmodal.nn.heads import (
    BoxHead,
    ClassifierHead,
    HeatmapHead,
    IntervalHead,
    SegmentClassifierHead,
    box_cxcywh_to_xyxy,
)
from xmodal.nn.multimodal import ContrastiveModel, LateFusionModel, contrastive_loss


def _x(**dims: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(3, d, generator=g, dtype=torch.float64) for k, d in dims.items()}


def test_concat_fusion_order_and_missing() -> None:
    x = _x(a=2, b=3)
    fusion = ConcatFusion({"b": 3, "a": 2})
    torch.testing.assert_close(fusion(x), torch.cat([x["b"], x["a"]], -1))
    with pytest.raises(MissingModalityError, match="missing"):
        fusion({"a": x["a"]})


def test_gated_fusion_is_a_convex_combination_of_modality_units() -> None:
    x = _x(a=4, b=5, c=6)
    fusion = GatedFusion({"a": 4, "b": 5, "c": 6}, out_dim=7).double()
    h = torch.stack([torch.tanh(fusion.proj[n](x[n])) for n in "abc"], 1)  # (3, M, 7)
    g = fusion.gate(torch.cat([x[n] for n in "abc"], -1)).view(3, 3, 7).softmax(1)
    torch.testing.assert_close(fusion(x), (g * h).sum(1))
    out = fusion(x)
    assert bool(((out >= h.min(1).values - 1e-12) & (out <= h.max(1).values + 1e-12)).all())


def test_low_rank_fusion_equals_tensor_fusion_with_the_rank_r_weight() -> None:
    """LMF is TFN (Zadeh et al. 2017) with W = sum_r w_r (F_a[r] x F_b[r] x F_c[r]): checked to 1e-10 in float64."""
    dims = {"a": 2, "b": 3, "c": 2}
    x = _x(**dims)
    lmf = LowRankFusion(dims, out_dim=4, rank=3).double()
    with torch.no_grad():
        lmf.fusion_bias.normal_()
    fa, fb, fc = (lmf.factors[n] for n in "abc")  # (rank, d+1, out)
    weight = torch.einsum("r,rio,rjo,rko->ijko", lmf.fusion_weights[0], fa, fb, fc)  # full TFN weight tensor
    z = {n: torch.cat([torch.ones(3, 1, dtype=torch.float64), v], -1) for n, v in x.items()}
    outer = torch.einsum("bi,bj,bk->bijk", z["a"], z["b"], z["c"])  # (batch, da+1, db+1, dc+1)
    expected = torch.einsum("bijk,ijko->bo", outer, weight) + lmf.fusion_bias
    torch.testing.assert_close(lmf(x), expected, atol=1e-10, rtol=1e-10)


def test_cross_modal_attention_ignores_padded_context() -> None:
    torch.manual_seed(0)
    block = CrossModalAttention(8, 6, num_heads=2).eval()
    q, c = torch.randn(2, 5, 8), torch.randn(2, 4, 6)
    padded = torch.cat([c, 100 * torch.randn(2, 3, 6)], 1)
    mask = torch.tensor([[True] * 4 + [False] * 3] * 2)
    torch.testing.assert_close(block(q, padded, mask), block(q, c), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(block(q, padded), block(q, c), atol=1e-3)
    fusion = CrossAttentionFusion("video", "audio", 8, 6, num_heads=2)
    qmask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = fusion({"video": q, "audio": padded, "audio_mask": mask, "video_mask": qmask})
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[1], fusion({"video": q[1:, :2], "audio": c[1:]})[0], atol=1e-5, rtol=1e-5)


def test_heads_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 16) * 5
    assert ClassifierHead(16, 7, hidden=8)(x).shape == (4, 7)
    assert SegmentClassifierHead(16, 29, temporal=True)(torch.randn(4, 10, 16)).shape == (4, 10, 29)
    with pytest.raises(ShapeError):
        SegmentClassifierHead(16, 29)(x)
    se = IntervalHead(16)(x)
    assert se.shape == (4, 2) and bool((se[:, 0] <= se[:, 1]).all()) and bool(((se >= 0) & (se <= 1)).all())
    box = BoxHead(16)(x)
    assert box.shape == (4, 4) and bool(((box > 0) & (box < 1)).all())
    torch.testing.assert_close(
        box_cxcywh_to_xyxy(torch.tensor([0.5, 0.5, 0.2, 0.4])), torch.tensor([0.4, 0.3, 0.6, 0.7])
    )


def test_heatmap_head_peaks_where_the_visual_feature_matches_the_audio() -> None:
    head = HeatmapHead(visual_channels=3, audio_dim=3, out_size=(8, 8))
    with torch.no_grad():  # identity projection: the map is the cosine between audio and each pixel
        head.proj.weight.copy_(torch.eye(3)[..., None, None])
        head.proj.bias.zero_()
    visual = torch.zeros(1, 3, 4, 4) + torch.tensor([0.0, 1.0, 0.0])[None, :, None, None]
    visual[0, :, 1, 2] = torch.tensor([1.0, 0.0, 0.0])
    small = HeatmapHead(3, 3)
    small.load_state_dict(head.state_dict())
    logits = small(visual, torch.tensor([[2.0, 0.0, 0.0]]))
    assert logits.shape == (1, 4, 4) and divmod(int(logits.flatten().argmax()), 4) == (1, 2)
    assert head(visual, torch.tensor([[2.0, 0.0, 0.0]])).shape == (1, 8, 8)


def test_late_fusion_model_composes_encoders_fusion_head() -> None:
    torch.manual_seed(0)
    encoders = {"image": CNN2d(3, (4, 8), out_dim=6), "audio": CNN1d(1, (4, 8), out_dim=5)}
    model = LateFusionModel(encoders, ConcatFusion({"image": 6, "audio": 5}), ClassifierHead(11, 3)).eval()
    audio = torch.randn(2, 1, 40)
    batch = {
        "image": torch.randn(2, 3, 16, 16),
        "audio": audio,
        "audio_mask": torch.ones(2, 40, dtype=torch.bool),
    }
    out = model(batch)
    assert set(out) == {"logits", "embedding"} and out["logits"].shape == (2, 3)
    with torch.no_grad():
        fused = torch.cat([encoders["image"](batch["image"]), encoders["audio"](audio)], -1)
        expected = model.head(fused)
    torch.testing.assert_close(out["logits"], expected)
    torch.testing.assert_close(out["embedding"], fused)
    with pytest.raises(MissingModalityError, match="audio"):
        model({"image": batch["image"]})


def test_contrastive_model_outputs_unit_embeddings_for_present_modalities() -> None:
    torch.manual_seed(0)
    model = ContrastiveModel(
        {"image": CNN2d(3, (4, 8)), "text": nn.Linear(10, 12)}, embed_dim=5, projections={"text": 12}
    )
    assert isinstance(model.projections["image"], nn.Linear) and model.projections["image"].in_features == 8
    out = model({"image": torch.randn(3, 3, 16, 16), "text": torch.randn(3, 10), "id": ["a", "b", "c"]})
    assert set(out) == {"image_emb", "text_emb", "logit_scale"}
    for k in ("image_emb", "text_emb"):
        assert out[k].shape == (3, 5)
        torch.testing.assert_close(out[k].norm(dim=-1), torch.ones(3))
    assert float(out["logit_scale"].detach()) == pytest.approx(1 / 0.07, rel=1e-6)
    assert set(model({"text": torch.randn(2, 10)})) == {"text_emb", "logit_scale"}
    loss = contrastive_loss(out)
    loss.backward()
    assert model.logit_scale.log_scale.grad is not None
    with pytest.raises(MissingModalityError):
        model({"audio": torch.randn(2, 3)})
    with pytest.raises(ConfigError, match="text"):
        ContrastiveModel({"text": nn.Linear(10, 12)}, embed_dim=5)
    with pytest.raises(ConfigError, match="without an encoder"):
        ContrastiveModel({"text": nn.Linear(10, 12)}, embed_dim=5, projections={"text": 12, "audio": 3})


@pytest.mark.slow
def test_contrastive_model_retrieves_its_own_pairs_after_training() -> None:
    """Tiny end-to-end sanity check: two views of the same real images align after a few steps."""
    from nn_data import skimage_images

    torch.manual_seed(0)
    imgs = skimage_images(16)
    batch = {
        "image": imgs,
        "gray": imgs.mean(1, keepdim=True).flip(-1),
    }  # a different "modality" of each item
    model = ContrastiveModel(
        {"image": CNN2d(3, (8, 16), norm="group"), "gray": CNN2d(1, (8, 16), norm="group")}, embed_dim=8
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = contrastive_loss(model(batch))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 < losses[0]  # starts near log(4) = 1.39
    with torch.no_grad():
        out = model(batch)
    sim = out["image_emb"] @ out["gray_emb"].T
    assert sim.argmax(1).tolist() == [0, 1, 2, 3]
    assert sim.argmax(0).tolist() == [0, 1, 2, 3]
