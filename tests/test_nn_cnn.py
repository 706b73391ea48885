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


def _crops(images: torch.Tensor, sizes: list[tuple[int, int]]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Real images cut to different sizes, each alone and padded (bottom/right, with noise so that leaking
    padding would show) into one batch with its ``(batch, H, W)`` mask."""
    crops = [img[:, :h, :w] for img, (h, w) in zip(images, sizes)]
    H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
    x = torch.rand(len(crops), images.shape[1], H, W)
    mask = torch.zeros(len(crops), H, W, dtype=torch.bool)
    for i, c in enumerate(crops):
        x[i, :, : c.shape[1], : c.shape[2]] = c
        mask[i, : c.shape[1], : c.shape[2]] = True
    return crops, x, mask


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("norm", ["layer", "none", "batch"])
def test_cnn1d_mask_is_exact_at_every_depth(depth: int, norm: str) -> None:
    """Several convs per stage: each clip alone and inside a padded batch agree on the pooled vector and on every
    valid step (atol 1e-5); padded steps are filled with noise so a leak through the second conv would show."""
    torch.manual_seed(0)
    clips = alsa_waveforms(4, max_len=1500)
    enc = CNN1d(1, channels=(6, 8, 8), out_dim=5, depth=depth, kernel_size=5, norm=norm, stem_stride=2).eval()
    x, mask = pad_batch(clips)
    x = torch.where(mask[:, None], x, torch.randn_like(x))
    with torch.no_grad():
        pooled = enc(x, mask=mask)
        seq, seq_mask = enc.forward_sequence(x, mask=mask)
        for i, clip in enumerate(clips):
            alone_seq, _ = enc.forward_sequence(clip[None])
            assert int(seq_mask[i].sum()) == alone_seq.shape[1]
            torch.testing.assert_close(seq[i, : alone_seq.shape[1]], alone_seq[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[i], enc(clip[None])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("norm", ["layer", "none"])
def test_cnn2d_mask_is_exact_at_every_depth(depth: int, norm: str) -> None:
    """2-D masks: real images of four sizes (odd ones included, so strided outputs round up), alone and padded
    into one batch, give the same feature maps on the valid region and the same pooled vector (atol 1e-5)."""
    torch.manual_seed(0)
    crops, x, mask = _crops(skimage_images(40), [(40, 40), (33, 25), (17, 40), (21, 9)])
    enc = CNN2d(3, channels=(6, 8, 8), out_dim=5, depth=depth, norm=norm).eval()
    with torch.no_grad():
        feats, feat_mask = enc.forward_features(x, mask)
        pooled = enc.pool(feats, feat_mask)
        for i, crop in enumerate(crops):
            alone, _ = enc.forward_features(crop[None])
            h, w = alone.shape[2:]
            assert feat_mask[i].sum() == h * w and feat_mask[i, :h, :w].all()
            torch.testing.assert_close(feats[i, :, :h, :w], alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[i], enc(crop[None])[0], atol=1e-5, rtol=1e-5)
        # Without the mask the padded crops differ: the comparison is not vacuous.
        assert not torch.allclose(enc(x)[3], enc(crops[3][None])[0], atol=1e-3)


def test_mask_shape_is_checked_in_2d() -> None:
    with pytest.raises(ShapeError, match="mask"):
        CNN2d(3, channels=(4,))(torch.randn(2, 3, 8, 8), mask=torch.ones(2, 8, 7, dtype=torch.bool))


def _pans(n: int, frames: int = 8, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of a window panning across real photographs (skimage), 1 px per frame, to the right (label 1) or
    to the left (label 0): every left pan is a right pan played backwards, so the frames alone carry no label."""
    data = pytest.importorskip("skimage.data")
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    g = torch.Generator().manual_seed(seed)
    clips, labels = [], []
    for k in range(n):
        photo = torch.from_numpy(photos[k % 4].copy()).permute(2, 0, 1).float() / 255.0
        photo = torch.nn.functional.interpolate(photo[None], size=(128, 128), mode="area")[0]
        y, x = (int(v) for v in torch.randint(0, 128 - size - frames, (2,), generator=g))
        clip = torch.stack([photo[:, y : y + size, x + t : x + t + size] for t in range(frames)], dim=1)
        right = bool(torch.randint(0, 2, (), generator=g))  # independent of the photo: no shortcut
        clips.append(clip if right else clip.flip(1))
        labels.append(int(right))
    return torch.stack(clips), torch.tensor(labels)


@pytest.mark.slow
def test_cnn3d_learns_motion_direction() -> None:
    """A 3-D CNN tells a pan to the right from one to the left on held-out clips (>= 85 %, 64 clips); the same
    encoder on the time-averaged clip, which holds the same pixels either way, stays near chance (<= 70 %)."""
    train_x, train_y = _pans(128, seed=0)
    test_x, test_y = _pans(64, seed=1)
    # each clip centred per channel: brightness says nothing about direction and only slows the fit
    train_x = train_x - train_x.mean((2, 3, 4), keepdim=True)
    test_x = test_x - test_x.mean((2, 3, 4), keepdim=True)

    def fit(average_time: bool) -> float:
        torch.manual_seed(0)
        enc = CNN3d(3, channels=(16,), out_dim=2, norm="none")
        opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
        prep = (lambda x: x.mean(2, keepdim=True).expand_as(x)) if average_time else (lambda x: x)
        for _ in range(180):
            idx = torch.randint(0, len(train_x), (32,))
            loss = torch.nn.functional.cross_entropy(enc(prep(train_x[idx])), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (enc(prep(test_x)).argmax(1) == test_y).float().mean().item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only contends (10x slower on a loaded machine)
    try:
        assert fit(average_time=False) >= 0.85
        assert fit(average_time=True) <= 0.7
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("depth", [1, 2])
def test_cnn3d_time_mask_is_exact(depth: int) -> None:
    """Clips of 5, 8 and 3 frames padded (with noise) to 8 in one batch: the valid part of the feature map and the
    pooled vector equal each clip's own (atol 1e-5)."""
    clips, _ = _pans(3)
    lengths = [5, 8, 3]
    x = torch.rand_like(clips)
    mask = torch.zeros(3, 8, 16, 16, dtype=torch.bool)
    for i, n in enumerate(lengths):
        x[i, :, :n] = clips[i, :, :n]
        mask[i, :n] = True
    torch.manual_seed(0)
    enc = CNN3d(3, channels=(4, 8), out_dim=5, depth=depth, norm="layer").eval()
    with torch.no_grad():
        feats, feat_mask = enc.forward_features(x, mask)
        pooled = enc.pool(feats, feat_mask)
        for i, n in enumerate(lengths):
            alone, _ = enc.forward_features(clips[i : i + 1, :, :n])
            t = alone.shape[2]
            assert feat_mask[i, :t].all() and not feat_mask[i, t:].any()
            torch.testing.assert_close(feats[i, :, :t], alone[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[i], enc(clips[i : i + 1, :, :n])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_channels_last_option_gives_the_same_values(norm: str) -> None:
    """Channels-last changes the layout only: outputs and weight gradients equal the default's (atol 1e-5) on
    real images, with and without a mask; the state dict holds the same values."""
    torch.manual_seed(0)
    plain = CNN2d(3, channels=(8, 16), out_dim=6, depth=2, norm=norm)
    fast = CNN2d(3, channels=(8, 16), out_dim=6, depth=2, norm=norm, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    _, x, mask = _crops(skimage_images(40), [(40, 40), (33, 25), (17, 40), (21, 9)])
    for m in (None, mask):
        out_plain, out_fast = plain(x, mask=m), fast(x, mask=m)
        torch.testing.assert_close(out_fast, out_plain, atol=1e-5, rtol=1e-5)
        plain.zero_grad()
        fast.zero_grad()
        out_plain.square().sum().backward()
        out_fast.square().sum().backward()
        for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    assert fast.stages[0].layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(fast.state_dict()[k], v) for k, v in plain.state_dict().items())
