"""VQ-VAE: the EMA codebook update against its formula by hand, dead-code restarts, perplexity and usage,
straight-through gradients, and short learning runs on real data (an image, a sound, a motion curve)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from xmodal.errors import ShapeError
from xmodal.generative.vq import VectorQuantizerEMA, audio_vqvae, codebook_stats, image_vqvae, motion_vqvae

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (see tests/conftest.py)


def test_ema_update_by_hand():
    vq = VectorQuantizerEMA(2, 1, decay=0.5, eps=0.0, dead_threshold=0.0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0], [10.0]]))
        vq.ema_sum.copy_(vq.codebook)
        vq.ema_count.fill_(1.0)
    z = torch.tensor([[[1.0, 2.0, 9.0]]])  # (batch 1, dim 1, 3 positions): codes 0, 0, 1
    out = vq(z)
    assert out["codes"].tolist() == [[0, 0, 1]]
    # counts: 0.5 * 1 + 0.5 * [2, 1] = [1.5, 1.0]; sums: 0.5 * [0, 10] + 0.5 * [3, 9] = [1.5, 9.5]
    torch.testing.assert_close(vq.ema_count, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(vq.codebook, torch.tensor([[1.0], [9.5]]))
    # perplexity of frequencies (2/3, 1/3) and full usage
    p = torch.tensor([2 / 3, 1 / 3])
    assert out["perplexity"].item() == pytest.approx(math.exp(-(p * p.log()).sum().item()), rel=1e-5)
    assert out["usage"].item() == 1.0
    # commitment: beta * mean((z - q)^2) with q = old codes [0, 0, 10]
    assert out["commitment"].item() == pytest.approx(0.25 * (1 + 4 + 1) / 3)
    # Laplace smoothing with eps: N_i <- (N_i + eps) / (n + K eps) * n
    vq2 = VectorQuantizerEMA(2, 1, decay=0.5, eps=0.1, dead_threshold=0.0)
    with torch.no_grad():
        vq2.codebook.copy_(torch.tensor([[0.0], [10.0]]))
        vq2.ema_sum.copy_(vq2.codebook)
    vq2(z)
    n = 2.5
    smoothed = torch.tensor([(1.5 + 0.1) / (n + 0.2) * n, (1.0 + 0.1) / (n + 0.2) * n])
    torch.testing.assert_close(vq2.codebook[:, 0], torch.tensor([1.5, 9.5]) / smoothed)


def test_dead_codes_restart_on_batch_vectors_and_eval_does_not_update():
    torch.manual_seed(0)
    vq = VectorQuantizerEMA(4, 2, decay=0.5, dead_threshold=0.9)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 0.0], [0.0, 300.0]]))
        vq.ema_sum.copy_(vq.codebook)
    z = torch.randn(2, 2, 5) * 0.1  # every vector goes to code 0
    out = vq(z)
    assert out["usage"].item() == 0.25 and out["perplexity"].item() == pytest.approx(1.0)
    # the three unused codes fell to an EMA count of 0.5 < 0.9 and now sit on batch vectors
    assert out["restarted"].tolist() == [False, True, True, True]
    flat = z.movedim(1, -1).reshape(-1, 2)
    for i in (1, 2, 3):
        assert (flat == vq.codebook[i]).all(1).any()
        assert vq.ema_count[i].item() == 1.0
    before = vq.codebook.clone()
    vq.eval()
    vq(z)
    assert torch.equal(before, vq.codebook)


def test_straight_through_gradients_and_errors():
    vq = VectorQuantizerEMA(8, 3)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    out = vq(z)
    assert out["quantized"].shape == z.shape and out["codes"].shape == (2, 4, 4)
    (out["quantized"].sum() + out["commitment"]).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ShapeError):
        vq(torch.randn(2, 4, 5))
    with pytest.raises(ShapeError):
        vq.lookup(torch.tensor([[8]]))
    stats = codebook_stats(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), 8)
    assert stats["usage"] == 0.5 and stats["perplexity"] == pytest.approx(4.0)


def _train(model, x, steps, lr=2e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        out = model(x)
        first = out["recon_loss"].item() if first is None else first
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return first, out


def test_image_vqvae_learns_a_real_image():
    skimage = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    img = torch.tensor(skimage.camera()[::32, ::32] / 255.0, dtype=torch.float32)  # (16, 16) real photo
    x = img[None, None].repeat(2, 1, 1, 1)
    model = image_vqvae(1, num_codes=32, latent_dim=8, hidden=8, downsample=2)
    first, out = _train(model, x, 30, lr=5e-3)
    assert out["recon_loss"].item() < 0.5 * first
    codes = model.encode_codes(x)
    assert codes.shape == (2, 4, 4)
    assert model.decode_codes(codes).shape == x.shape
    assert 0 < out["usage"].item() <= 1 and out["perplexity"].item() >= 1


def test_audio_and_motion_vqvae_shapes_on_real_signals():
    path = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if not path.exists():
        pytest.skip("alsa test sounds are not installed")
    import soundfile as sf

    torch.manual_seed(0)
    wav, _ = sf.read(path, dtype="float32")
    x = torch.from_numpy(wav[4000:4000 + 1024]).reshape(1, 1, -1)
    audio = audio_vqvae(num_codes=16, latent_dim=4, hidden=8, downsample=3)
    out = audio(x)
    assert out["codes"].shape == (1, 128) and out["reconstruction"].shape == x.shape
    # motion: a swinging 3-joint arm, (batch, frames, joints * 3)
    t = torch.linspace(0, 4 * math.pi, 64)
    joints = torch.stack([torch.stack([torch.cos(t * k), torch.sin(t * k), t * 0], -1) for k in (1, 2, 3)], 1)
    motion = joints.reshape(1, 64, 9)
    mv = motion_vqvae(9, num_codes=16, latent_dim=4, hidden=16, downsample=2)
    first, out = _train(mv, motion, 30)
    assert out["codes"].shape == (1, 16) and out["recon_loss"].item() < first
    with pytest.raises(ShapeError):
        mv(motion[:, :63])


def _vq_worker(rank: int, port: int, result_dir: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        torch.manual_seed(rank)  # different restart draws per rank: rank 0's must win
        vq = _distributed_quantizer()
        z = _distributed_batch()[rank * 3 : (rank + 1) * 3]
        vq(z)
        torch.save({"codebook": vq.codebook, "count": vq.ema_count}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _distributed_quantizer() -> VectorQuantizerEMA:
    vq = VectorQuantizerEMA(6, 2, decay=0.5, eps=0.0, dead_threshold=0.4)
    with torch.no_grad():  # two codes in use, four far away that will die and restart
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]] + [[50.0 + i, 50.0] for i in range(4)]))
        vq.ema_sum.copy_(vq.codebook * 0.5)
        vq.ema_count.fill_(0.5)
    return vq


def _distributed_batch() -> torch.Tensor:
    return torch.randn(6, 2, 4, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.5


@pytest.mark.distributed
def test_codebook_statistics_are_summed_over_ranks():
    """Two gloo ranks with half the batch each keep the same codebook, equal to one process on the whole batch
    for the live codes (the restarted ones come from rank 0's draw)."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_vq_worker, args=(port, tmp), nprocs=2, join=True)
        ranks = [torch.load(f"{tmp}/rank{r}.pt", weights_only=True) for r in range(2)]
    assert torch.equal(ranks[0]["codebook"], ranks[1]["codebook"])
    single = _distributed_quantizer()
    single(_distributed_batch())
    torch.testing.assert_close(ranks[0]["codebook"][:2], single.codebook[:2])
    torch.testing.assert_close(ranks[0]["count"], single.ema_count)
