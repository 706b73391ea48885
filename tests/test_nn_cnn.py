"""Conv encoders: shapes, feature maps, and exact padding-mask behaviour on real speech (alsa-utils clips)."""

from __future__ import annotations

import pytest
import torch
from nn_data import alsa_waveforms, pad_batch, skimage_images

from xmodal.errors import ShapeError
from xmodal.nn.encoders.cnn import CNN1d, CNN2d, CNN3d


def test_cnn2d_shapes_on_real_images() -> None:
    torch.manual_seed(0)
    x = skimage_images(32)  # (4, 3, 32, 32)
    enc = CNN2d(3, channels=(8, 16, 32), out_dim=24, norm="group")
    assert enc(x).shape == (4, 24)
    feats, mask = enc.forward_features(x)
    assert feats.shape == (4, 32, 8, 8) and mask is None  # two stride-2 stages: 32 -> 16 -> 8
    assert enc.out_dim == 24 and CNN2d(3, channels=(8, 16)).out_dim == 16


def test_cnn3d_shapes() -> None:
    enc = CNN3d(3, channels=(4, 8), out_dim=5)
    assert enc(torch.randn(2, 3, 4, 16, 16)).shape == (2, 5)
    assert enc.forward_features(torch.randn(2, 3, 4, 16, 16))[0].shape == (2, 8, 2, 8, 8)


def test_wrong_input_shape_is_typed() -> None:
    with pytest.raises(ShapeError, match="expected"):
        CNN2d(3)(torch.randn(2, 1, 8, 8))
    with pytest.raises(ShapeError, match="mask"):
        CNN1d(1)(torch.randn(2, 1, 10), mask=torch.ones(2, 9, dtype=torch.bool))


@pytest.mark.parametrize("norm,stem_stride", [("batch", 1), ("layer", 1), ("layer", 4), ("none", 2)])
def test_cnn1d_padding_does_not_change_valid_outputs(norm: str, stem_stride: int) -> None:
    """Each clip alone (no padding) and inside a right-padded batch give the same pooled vector and the same
    per-step features on its valid steps: atol 1e-5 (float32 sums in a different order)."""
    torch.manual_seed(0)
    clips = alsa_waveforms(4)
    enc = CNN1d(1, channels=(8, 16, 16), out_dim=12, norm=norm, kernel_size=5, stem_stride=stem_stride).eval()
    x, mask = pad_batch(clips)
    with torch.no_grad():
        pooled = enc(x, mask=mask)
        seq, seq_mask = enc.forward_sequence(x, mask=mask)
        for i, clip in enumerate(clips):
            alone = enc(clip[None])
            alone_seq, _ = enc.forward_sequence(clip[None])
            n_valid = int(seq_mask[i].sum())
            assert n_valid == alone_seq.shape[1]
            torch.testing.assert_close(pooled[i], alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(seq[i, :n_valid], alone_seq[0], atol=1e-5, rtol=1e-5)
    if norm == "layer":  # Without the mask the padded clips differ: the test is not vacuous.
        with torch.no_grad():
            assert not torch.allclose(enc(x)[3], enc(clips[3][None])[0], atol=1e-3)
