"""Sequence encoders (BiLSTM/BiGRU, Transformer, selective SSM) on real speech frames (alsa-utils clips) and real
text bytes: padding never changes valid outputs or pooled vectors (atol 1e-5), and the chunked SSM scan equals
the sequential reference (atol 1e-5)."""

from __future__ import annotations

import pytest
import torch
from nn_data import alsa_waveforms

from xmodal.errors import ShapeError
from xmodal.nn.encoders.rnn import BiGRU, BiLSTM
from xmodal.nn.encoders.ssm import SSMEncoder, selective_scan_chunked, selective_scan_sequential
from xmodal.nn.encoders.transformer import TransformerEncoder, sinusoidal_positions

FRAME = 16


def _frames(n: int = 3, max_len: int = 960) -> list[torch.Tensor]:
    """Real speech as ``(time, 16)`` frames of 16 samples, scaled to unit variance, distinct lengths."""
    clips = alsa_waveforms(n, stride=16, max_len=max_len)
    out = []
    for c in clips:
        c = c[0, : c.shape[-1] // FRAME * FRAME]
        out.append((c / c.std()).reshape(-1, FRAME))
    return out


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(s.shape[0] for s in seqs)
    x = torch.zeros(len(seqs), t, *seqs[0].shape[1:], dtype=seqs[0].dtype)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return x, mask


def _check_padding_invariance(enc: torch.nn.Module, seqs: list[torch.Tensor], cls_offset: int = 0) -> None:
    x, mask = _pad(seqs)
    x = x.clone()
    x[~mask] = 7  # junk in the padding (a valid token id for the byte vocabulary too)
    with torch.no_grad():
        feats, pooled = enc.forward_all(x, mask)
        for i, s in enumerate(seqs):
            f1, p1 = enc.forward_all(s[None])
            n = s.shape[0] + cls_offset
            torch.testing.assert_close(pooled[i], p1[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(feats[i, :n], f1[0, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls,pool", [(BiLSTM, "last"), (BiGRU, "mean"), (BiLSTM, "mean")])
def test_rnn_padding_invariance(cls: type, pool: str) -> None:
    torch.manual_seed(0)
    enc = cls(FRAME, hidden=12, num_layers=2, pool=pool, out_dim=10).eval()
    seqs = _frames()
    _check_padding_invariance(enc, seqs)
    x, mask = _pad(seqs)
    with torch.no_grad():
        feats, pooled = enc.forward_all(x, mask)
    assert feats.shape == (3, x.shape[1], 24) and pooled.shape == (3, 10)
    assert float(feats[~mask].abs().max()) == 0.0


@pytest.mark.parametrize(
    "positions,cls_token,pool",
    [("learned", False, "mean"), ("sinusoidal", True, "cls"), ("none", True, "mean")],
)
def test_transformer_padding_invariance_on_speech(positions: str, cls_token: bool, pool: str) -> None:
    torch.manual_seed(0)
    enc = TransformerEncoder(
        dim=16,
        depth=2,
        heads=2,
        in_dim=FRAME,
        max_len=128,
        positions=positions,
        cls_token=cls_token,
        pool=pool,
        out_dim=8,
    ).eval()
    seqs = [s[:60] for s in _frames()]
    _check_padding_invariance(enc, seqs, cls_offset=int(cls_token))


def test_transformer_on_real_text_bytes() -> None:
    torch.manual_seed(0)
    texts = ["GRINNING FACE", "DOG FACE", "SPEAKER WITH THREE SOUND WAVES"]
    ids = [torch.tensor(list(t.encode("utf-8")), dtype=torch.long) for t in texts]
    enc = TransformerEncoder(dim=16, depth=1, heads=2, vocab_size=256, max_len=64, cls_token=True).eval()
    _check_padding_invariance(enc, ids, cls_offset=1)
    with pytest.raises(ShapeError, match="token ids"):
        enc(torch.tensor([[300]]))
    with pytest.raises(ShapeError, match="max_len"):
        enc(torch.zeros(1, 65, dtype=torch.long))


def test_sinusoidal_positions_formula() -> None:
    pe = sinusoidal_positions(10, 6)
    assert float(pe[3, 2]) == pytest.approx(torch.sin(torch.tensor(3 / 10000 ** (2 / 6))).item(), abs=1e-6)
    assert float(pe[3, 5]) == pytest.approx(torch.cos(torch.tensor(3 / 10000 ** (4 / 6))).item(), abs=1e-6)


@pytest.mark.parametrize("t,chunk", [(37, 8), (37, 5), (16, 16), (5, 16), (300, 32)])
def test_chunked_scan_equals_sequential(t: int, chunk: int) -> None:
    """Strong decays (dt * |A| up to 40 per step) included: the chunked scan stays exact and finite."""
    g = torch.Generator().manual_seed(t)
    b, d, n = 2, 6, 4
    x, dt = torch.randn(b, t, d, generator=g), torch.rand(b, t, d, generator=g) * 2
    A = -torch.rand(d, n, generator=g) * 20
    B, C, D = (
        torch.randn(b, t, n, generator=g),
        torch.randn(b, t, n, generator=g),
        torch.randn(d, generator=g),
    )
    ref = selective_scan_sequential(x, dt, A, B, C, D)
    torch.testing.assert_close(
        selective_scan_chunked(x, dt, A, B, C, D, chunk=chunk), ref, atol=1e-5, rtol=1e-5
    )


def test_ssm_encoder_scans_agree_and_respect_masks() -> None:
    torch.manual_seed(0)
    enc = SSMEncoder(FRAME, dim=16, depth=2, d_state=8, chunk=8, out_dim=12).eval()
    seqs = _frames()
    _check_padding_invariance(enc, seqs)
    x, mask = _pad(seqs)
    with torch.no_grad():
        fast = enc.forward_all(x, mask)
        for block in enc.blocks:
            block.sequential = True
        slow = enc.forward_all(x, mask)
    torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], atol=1e-5, rtol=1e-5)
    loss = enc(x, mask).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())
