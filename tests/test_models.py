"""Models from specs and plans: every modality's default encoder runs on an input of its spec's shape (padding
masks exact against the unpadded input), overrides, registries, user plug-ins by dotted path, bad plans."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xmodal.data.io.graph import Graph
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES
from xmodal.models import ENCODERS, build_encoder, build_loss, build_model, check_plan, register_encoder
from xmodal.nn.multimodal import ContrastiveModel, LateFusionModel

ALSA = "/usr/share/sounds/alsa/Front_Center.wav"
LENGTHS = (12, 7)  # the second sample is padded from 7 to 12 steps


def _real_image() -> torch.Tensor:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((32, 32))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255.0  # (3, 32, 32)


def _speech() -> torch.Tensor:
    from xmodal.data.io import read_audio

    wav, _ = read_audio(ALSA, 16000)
    return torch.from_numpy(wav[4000:8000].copy())  # (4000,) of spoken "front centre"


def _scale_notes() -> torch.Tensor:
    pitches = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65]  # a C major scale up and down, 0.25 s apart
    return torch.tensor([[0.25 * i, 0.25 * i + 0.2, p, 80, 0] for i, p in enumerate(pitches)], dtype=torch.float32)


def _padded(seqs: list[torch.Tensor], axis: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from xmodal.data.sample import collate

    batch = collate([{"id": str(i), "x": s} for i, s in enumerate(seqs)], pad_modalities={"x": axis})
    return batch["x"], batch["x_mask"]


def _input(name: str) -> tuple[object, torch.Tensor | None, dict]:
    """A batch of two inputs of the spec's layout, the mask (None: not padded) and small settings."""
    g = torch.Generator().manual_seed(0)
    t_long, t_short = LENGTHS
    small = {"width": 32}
    if name == "image":
        img = _real_image()
        return torch.stack([img, img.flip(-1)]), None, small
    if name in ("video", "optical_flow"):
        ch = 3 if name == "video" else 2
        clip = torch.rand(t_long, ch, 16, 16, generator=g)
        x, m = _padded([clip, clip[:t_short]])
        return x, m, small
    if name == "waveform":
        wav = _speech()
        x, m = _padded([wav, wav[:2500]])
        return x, m, small
    if name == "spectrogram":
        from xmodal.data.features import MelSpectrogram

        mel = MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40, log=True)(_speech().double()).float()
        x, m = _padded([mel, mel[:, :15]], axis=1)
        return x, m, small
    if name == "piano_roll":
        from xmodal.data.features import piano_roll

        roll = torch.from_numpy(piano_roll(_scale_notes().numpy(), fs=20.0)).float()  # (128, frames)
        x, m = _padded([roll, roll[:, : roll.shape[1] // 2]], axis=1)
        return x, m, small
    if name == "midi_notes":
        notes = _scale_notes()
        x, m = _padded([notes, notes[:t_short]])
        return x, m, small
    if name == "vq_tokens":
        ids = torch.randint(1, 1024, (t_long,), generator=g)
        x, m = _padded([ids, ids[:t_short]])
        return x, m, small
    if MODALITIES[name].is_text:
        from transformers import AutoTokenizer

        from xmodal.pretrained.minilm import model_path

        tok = AutoTokenizer.from_pretrained(str(model_path()))
        texts = ["a cat sitting on a red mat in the sun", "a barking dog"]
        enc = tok(texts, padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool(), small
    if name == "point_cloud":
        pts = torch.randn(t_long * 4, 3, generator=g)
        pts = pts / pts.norm(dim=1, keepdim=True)  # points on the unit sphere
        x, m = _padded([pts, pts[: t_short * 4]])
        return x, m, small
    if name == "mesh":
        tetra = {"vertices": torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                 "faces": torch.tensor([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])}
        square = {"vertices": torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]),
                  "faces": torch.tensor([[0, 1, 2], [0, 2, 3]])}
        return [tetra, square], None, small
    if name == "graph":
        ring = Graph(np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32),
                     np.array([[0, 1, 2, 3, 4], [1, 2, 3, 4, 0]]))
        pair = Graph(np.ones((2, 16), np.float32), np.array([[0, 1], [1, 0]]))
        return [ring, pair], None, small
    if name in ("skeleton_2d", "skeleton_3d"):
        joints, coords = (17, 2) if name == "skeleton_2d" else (24, 3)
        pose = torch.randn(t_long, joints, coords, generator=g)
        x, m = _padded([pose, pose[:t_short]])
        return x, m, small
    if name == "smpl":
        seq = torch.randn(t_long, 85, generator=g)
        x, m = _padded([seq, seq[:t_short]])
        return x, m, small
    if name == "numeric":
        return torch.tensor([1.5, -0.25]), None, small
    if name == "categorical":
        return torch.tensor([0, 3]), None, {"num_categories": 4, "width": 32}
    raise AssertionError(f"no test input for {name}")


def _unpadded_second(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The second sample alone, cut to its valid length (the reference the padded batch must reproduce)."""
    n = int(mask[1].sum())
    time_axis = next(a for a in range(1, x.dim()) if x.shape[a] == mask.shape[1])
    return x[1:2].narrow(time_axis, 0, n)


@pytest.mark.parametrize("name", sorted(MODALITIES))
def test_every_spec_builds_and_runs(name: str) -> None:
    torch.manual_seed(0)
    x, mask, settings = _input(name)
    enc = build_encoder(name, **settings).eval()
    with torch.no_grad():
        out = enc(x) if mask is None else enc(x, mask=mask)
    assert out.shape == (2, enc.out_dim)
    assert torch.isfinite(out).all()
    if mask is not None:
        alone = _unpadded_second(x, mask)
        with torch.no_grad():
            ref = enc(alone, mask=torch.ones(1, mask[1].sum(), dtype=torch.bool)) if alone.dtype == torch.long \
                else enc(alone)
        torch.testing.assert_close(out[1:2], ref, atol=1e-5, rtol=1e-4)


def test_encoder_families_follow_the_spec() -> None:
    from xmodal.nn.encoders import ConvEncoder, GNNEncoder, PointNetEncoder, SSMEncoder, TransformerEncoder

    kinds = {"image": (ConvEncoder, 2), "spectrogram": (ConvEncoder, 2), "video": (ConvEncoder, 3),
             "waveform": (ConvEncoder, 1), "skeleton_3d": (ConvEncoder, 1)}
    for name, (cls, dims) in kinds.items():
        inner = build_encoder(name).encoder
        assert isinstance(inner, cls) and inner.dims == dims, name
    assert build_encoder("spectrogram").encoder.in_channels == 1
    assert build_encoder("skeleton_3d").encoder.in_channels == 24 * 3
    assert build_encoder("skeleton_2d", joints=25).encoder.in_channels == 25 * 2
    assert isinstance(build_encoder("smpl").encoder, SSMEncoder)
    assert isinstance(build_encoder("caption").encoder, TransformerEncoder)
    assert build_encoder("caption").encoder.input.vocab_size == 30522
    assert isinstance(build_encoder("point_cloud"), PointNetEncoder)
    assert isinstance(build_encoder("mesh").encoder, GNNEncoder)
    assert isinstance(build_encoder("audio").encoder, ConvEncoder)  # alias of waveform


def test_overrides_switch_family_and_size() -> None:
    from xmodal.nn.encoders import SSMEncoder

    enc = build_encoder("skeleton_3d", family="ssm", width=128)
    assert isinstance(enc.encoder, SSMEncoder) and enc.out_dim == 128
    x = torch.randn(2, 10, 24, 3)
    assert enc(x).shape == (2, 128)
    assert [s.layers[0].out_channels for s in build_encoder("image", width=64).encoder.stages] == [8, 16, 32, 64]
    assert build_encoder("image", channels=[4, 8]).out_dim == 8
    mel_channels = build_encoder("spectrogram", family="cnn1d", in_channels=40, width=32)
    assert mel_channels(torch.randn(2, 40, 30)).shape == (2, 32)
    assert build_encoder("image", out_dim=10).out_dim == 10


@pytest.mark.parametrize(("overrides", "key"), [
    ({"widht": 3}, r"image\.widht"),
    ({"width": "wide"}, r"image\.width"),
    ({"width": 0}, r"image\.width"),
    ({"width": 16, "channels": [4, 8]}, "width or channels"),
    ({"family": "no_such_family"}, r"image\.family"),
    ({"norm": "weird"}, r"image\.norm"),
    ({"channels": [8, -2]}, r"image\.channels"),
])
def test_bad_overrides_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        build_encoder("image", **overrides)


def test_family_that_does_not_fit_the_spec() -> None:
    with pytest.raises(ConfigError, match="waveform"):
        build_encoder("waveform", family="cnn2d")
    with pytest.raises(ConfigError, match="minilm"):
        build_encoder("image", family="minilm")


def test_register_and_dotted_path_plug_ins() -> None:
    @register_encoder("test_flatten_linear")
    def flatten_linear(spec, *, width: int = 4) -> nn.Module:
        layer = nn.Sequential(nn.Flatten(), nn.LazyLinear(width))
        layer.out_dim = width
        return layer

    assert "test_flatten_linear" in ENCODERS.names()
    assert build_encoder("numeric", family="test_flatten_linear", width=3).out_dim == 3
    user = build_encoder("image", family="user_plugin_encoder:MeanPoolEncoder", width=5)
    assert type(user).__name__ == "MeanPoolEncoder" and user.spec_name == "image"
    assert user(torch.rand(2, 3, 8, 8)).shape == (2, 5)
    with pytest.raises(ConfigError, match=r"image\.widht"):  # a user's encoder's settings are checked too
        build_encoder("image", family="user_plugin_encoder:MeanPoolEncoder", widht=5)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_pkg.mod'"):
        build_encoder("image", family="no_such_pkg.mod:Enc")
    with pytest.raises(ConfigError, match="no attribute 'Missing'"):
        build_encoder("image", family="user_plugin_encoder:Missing")
    with pytest.raises(ConfigError, match="not callable"):
        build_encoder("image", family="user_plugin_encoder:NOT_CALLABLE")
    with pytest.raises(ConfigError, match="dotted path"):
        build_encoder("image", family="../evil:x")


def test_build_model_late_fusion_every_fusion() -> None:
    torch.manual_seed(0)
    wav = _speech()
    x, mask = _padded([wav[:3000], wav[:1800]])
    batch = {"image": torch.stack([_real_image()] * 2), "waveform": x, "waveform_mask": mask}
    for kind in ("concat", "gated", "low_rank", "attention_pooled", "cross_attention"):
        plan = {"encoders": {"image": {"width": 32}, "waveform": {"family": "cnn1d", "width": 32}},
                "fusion": {"kind": kind}, "head": {"kind": "classifier", "classes": 10}}
        model = build_model(plan)
        assert isinstance(model, LateFusionModel)
        out = model(batch)
        assert out["logits"].shape == (2, 10) and out["embedding"].shape[0] == 2, kind
    plan = {"encoders": {"image": {"width": 32}, "waveform": {"family": "ssm", "width": 16, "in_dim": 1}},
            "fusion": {"kind": "cross_attention"}, "head": {"kind": "classifier", "classes": 10}}
    check_plan(plan)
    reg = build_model({"encoders": {"price": {"modality": "numeric", "in_dim": 2}}, "head": {"kind": "regression"}})
    assert reg({"price": torch.randn(4, 2)})["prediction"].shape == (4,)


def test_build_model_contrastive_plan() -> None:
    model = build_model({"encoders": {"image": {"width": 32}, "caption": {"width": 32, "depth": 1}},
                         "embed_dim": 16})
    assert isinstance(model, ContrastiveModel)
    ids = torch.randint(1, 100, (2, 5))
    out = model({"image": torch.rand(2, 3, 16, 16), "caption": ids, "caption_mask": torch.ones(2, 5, dtype=torch.bool)})
    assert set(out) == {"image_emb", "caption_emb", "logit_scale"}
    torch.testing.assert_close(out["image_emb"].norm(dim=1), torch.ones(2))


@pytest.mark.parametrize(("plan", "key"), [
    ({"encoders": {"image": "default"}, "head": {"kind": "classifier"}}, r"model\.head\.classes"),
    ({"encoders": {"image": "default"}, "head": {"kind": "classifier", "classes": "ten"}}, r"model\.head\.classes"),
    ({"encoders": {"image": "default"}, "head": {"kind": "classifier", "classes": 0}}, r"model\.head\.classes"),
    ({"encoders": {"image": "default"}, "fusion": {"kind": "sum"}, "head": {"kind": "classifier", "classes": 2}},
     r"model\.fusion\.kind"),
    ({"encoders": {"image": "default"}, "fusion": {"kind": "gated", "width": -1},
      "head": {"kind": "classifier", "classes": 2}}, r"model\.fusion\.width"),
    ({"encoders": {"image": {"width": 2.5}}}, r"model\.encoders\.image\.width"),
    ({"encoders": {"smell": "default"}}, r"model\.encoders\.smell"),
    ({"encoders": {"image": 3}}, r"model\.encoders\.image"),
    ({"encoders": {}}, r"model\.encoders"),
    ({"encoders": {"image": "default"}, "fusion": {"kind": "concat"}}, r"model\.fusion"),
    ({"encoders": {"image": "default"}, "heads": {}}, r"model\.heads"),
    ({"encoders": {"image": "default"}, "embed_dim": 0}, r"model\.embed_dim"),
    ({"encoders": {"image": "default"}, "init_temperature": math.nan}, r"model\.init_temperature"),
])
def test_bad_plans_name_the_key(plan: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        check_plan(plan)
    with pytest.raises(ConfigError, match=key):
        build_model(plan)


def test_losses_from_the_registry_hand_worked() -> None:
    ce = build_loss("cross_entropy")
    # equal logits over two classes: -log(1/2)
    assert ce({"logits": torch.zeros(3, 2)}, {"label": torch.tensor([0, 1, 1])}).item() == pytest.approx(math.log(2))
    mse = build_loss("mse")
    assert mse({"prediction": torch.tensor([1.0, 3.0])}, {"label": torch.tensor([0.0, 1.0])}).item() == 2.5
    bce = build_loss("bce")
    # logit 0 -> p = 1/2 for every entry: log 2
    assert bce({"logits": torch.zeros(2, 3)}, {"label": torch.ones(2, 3)}).item() == pytest.approx(math.log(2))
    assert build_loss("info_nce").coupled and not ce.coupled
    with pytest.raises(ConfigError, match=r"loss\.smoothing"):
        build_loss("cross_entropy", smoothing=0.1)
    with pytest.raises(ConfigError, match=r"loss\.kind"):
        build_loss("hinge")
