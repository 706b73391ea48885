"""Token-level cross-attention fusion (``fusion: {kind: cross_attention}``): every encoder family gives its tokens
and their mask beside the pooled vector (the pooled vector unchanged, and for mean-pooling families the masked
mean of the tokens); padding appended to any input changes nothing in the fused output (float64, to 1e-6; a
fusion that ignored the masks misses by 0.27); attention reaches across modalities; ``xmodal train`` on real
emoji pictures and names beats the majority baseline; an encoder that gives no tokens is a ConfigError naming
its modality (exit code 2 from the CLI)."""

from __future__ import annotations

import pytest
import torch
from test_models import _input, _unpadded_second

from xmodal.errors import ConfigError
from xmodal.models import build_encoder, build_model
from xmodal.nn.tokens import EncoderTokens, gives_tokens, pad_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (modality, settings) covering every family build_encoder builds
FAMILIES = [
    ("waveform", {}), ("spectrogram", {}), ("video", {}), ("image", {}), ("skeleton_3d", {}),  # cnn1d/2d/3d
    ("caption", {}), ("vq_tokens", {}), ("midi_notes", {}),  # transformer (token ids, notes)
    ("smpl", {}), ("midi_notes", {"family": "ssm"}),  # ssm
    ("smpl", {"family": "rnn"}), ("skeleton_3d", {"family": "transformer"}),  # rnn, transformer on features
    ("point_cloud", {}), ("graph", {}), ("mesh", {}),  # pointnet, gnn
    ("numeric", {}), ("categorical", {}),  # mlp, embedding
]
MEAN_POOLED = {"cnn1d", "cnn2d", "cnn3d", "transformer", "ssm", "gnn"}  # pooled == masked mean of the tokens


def _family(name: str, settings: dict) -> str:
    from xmodal.modalities import get_modality

    return settings.get("family") or get_modality(name).default_encoder


def _double(x: object) -> object:
    return x.double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


@pytest.mark.parametrize(("name", "settings"), FAMILIES, ids=lambda v: v if isinstance(v, str) else v.get("family", ""))
def test_every_family_gives_tokens_beside_the_unchanged_pooled_vector(name: str, settings: dict) -> None:
    torch.manual_seed(0)
    x, mask, small = _input(name)
    enc = build_encoder(name, **{**small, **settings}).eval()
    kwargs = {} if mask is None else {"mask": mask}
    with torch.no_grad():
        out = enc(x, return_tokens=True, **kwargs)
        pooled = enc(x, **kwargs)
    assert isinstance(out, EncoderTokens) and gives_tokens(enc)
    b, length, dim = out.tokens.shape
    assert (b, dim) == (2, enc.out_dim) and out.mask.shape == (2, length) and out.mask.dtype == torch.bool
    assert torch.equal(out.pooled, pooled)  # the default output is untouched
    if mask is not None:  # the shorter sample has fewer valid tokens
        assert out.mask[0].all() and 0 < int(out.mask[1].sum()) < length
    if _family(name, settings) in MEAN_POOLED:
        w = out.mask[..., None].float()
        torch.testing.assert_close((out.tokens * w).sum(1) / w.sum(1), out.pooled, atol=1e-5, rtol=1e-5)
    if name == "graph":  # a ring of 5 nodes and a pair: 5 and 2 valid tokens
        assert out.mask.sum(1).tolist() == [5, 2]


def test_minilm_projection_is_one_token() -> None:
    enc = build_encoder("caption", family="minilm", width=16).eval()
    emb = torch.randn(3, 384)
    out = enc(emb, return_tokens=True)
    assert out.tokens.shape == (3, 1, 16) and out.mask.all() and torch.equal(out.tokens[:, 0], enc(emb))


def _plan(name: str, settings: dict, **fusion: object) -> dict:
    return {"encoders": {"image": {"width": 16}, name: {"modality": name, "width": 16, **settings}},
            "fusion": {"kind": "cross_attention", "width": 16, "heads": 2, "depth": 2, **fusion},
            "head": {"kind": "classifier", "classes": 3}}


PADDED = [("waveform", {}), ("spectrogram", {}), ("video", {}), ("caption", {}), ("midi_notes", {}),
          ("smpl", {}), ("smpl", {"family": "rnn"}), ("point_cloud", {}), ("skeleton_3d", {})]


@pytest.mark.parametrize(("name", "settings"), PADDED, ids=lambda v: v if isinstance(v, str) else v.get("family", ""))
def test_padding_appended_does_not_change_the_fused_output(name: str, settings: dict) -> None:
    torch.manual_seed(0)
    x, mask, _ = _input(name)
    x = _double(x)
    model = build_model(_plan(name, settings)).double().eval()
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        batch = model({"image": images, name: x, f"{name}_mask": mask})["logits"]
        # the second sample alone, unpadded: what the padded batch must reproduce
        alone = model({"image": images[1:], name: _unpadded_second(x, mask)})["logits"]
        # more padding appended to the whole batch (garbage values: the mask alone must hide them)
        axis = next(a for a in range(1, x.dim()) if x.shape[a] == mask.shape[1])
        extra = list(x.shape)
        extra[axis] = 5
        junk = torch.full(extra, 7, dtype=x.dtype) if x.dtype == torch.long else 50 * torch.randn(extra, dtype=x.dtype)
        longer = model({"image": images, name: torch.cat([x, junk], axis),
                        f"{name}_mask": torch.cat([mask, mask.new_zeros(2, 5)], 1)})["logits"]
    torch.testing.assert_close(batch[1:], alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(longer, batch, atol=1e-6, rtol=0)


def test_graph_nodes_padded_per_graph_change_nothing() -> None:
    torch.manual_seed(0)
    graphs, _, _ = _input("graph")
    model = build_model(_plan("graph", {"in_dim": 16})).double().eval()
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)

    def collated(gs: list) -> dict:
        xs = [torch.as_tensor(g.x, dtype=torch.float64) for g in gs]
        offsets = torch.tensor([0] + [len(v) for v in xs[:-1]]).cumsum(0)
        edges = torch.cat([torch.as_tensor(g.edge_index) + o for g, o in zip(gs, offsets)], 1)
        batch = torch.cat([torch.full((len(v),), i) for i, v in enumerate(xs)])
        return {"x": torch.cat(xs), "edge_index": edges, "batch": batch, "num_graphs": len(gs)}

    with torch.no_grad():
        both = model({"image": images, "graph": collated(graphs)})["logits"]
        pair = model({"image": images[1:], "graph": collated(graphs[1:])})["logits"]
    torch.testing.assert_close(both[1:], pair, atol=1e-6, rtol=0)
    values, valid = pad_groups(torch.arange(10.0)[:, None], torch.tensor([1, 0, 1, 1, 0, 2, 2, 1, 0, 0]), 4)
    assert valid.sum(1).tolist() == [4, 4, 2, 0]  # an empty group is all padding
    assert values[0, :, 0].tolist() == [1, 4, 8, 9] and values[1, :, 0].tolist() == [0, 2, 3, 7]


def test_tokens_attend_across_modalities() -> None:
    torch.manual_seed(0)
    x, mask, _ = _input("waveform")
    model = build_model(_plan("waveform", {})).eval()
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        fused = model({"image": images, "waveform": x, "waveform_mask": mask})["embedding"]
        other = model({"image": images.flip(0), "waveform": x, "waveform_mask": mask})["embedding"]
    assert fused.shape == (2, 2 * 16)
    # the waveform's half of the fused vector moves when only the image changes: its tokens attended to the image's
    assert not torch.allclose(fused[:, 16:], other[:, 16:], atol=1e-4)
    alone = build_model({"encoders": {"image": {"width": 16}}, "fusion": {"kind": "cross_attention", "width": 16},
                         "head": {"kind": "classifier", "classes": 2}})  # a lone modality attends to itself
    assert alone({"image": images})["logits"].shape == (2, 2)


def test_attention_pooled_keeps_the_vector_fusion() -> None:
    from xmodal.models.parts import ModalityAttentionFusion

    plan = {"encoders": {"image": {"width": 16}, "numeric": {"in_dim": 2}}, "fusion": {"kind": "attention_pooled",
                                                                                      "width": 32},
            "head": {"kind": "classifier", "classes": 2}}
    model = build_model(plan)
    assert isinstance(model.fusion, ModalityAttentionFusion) and not getattr(model.fusion, "needs_tokens", False)
    assert model({"image": torch.rand(2, 3, 16, 16), "numeric": torch.randn(2, 2)})["logits"].shape == (2, 2)


def test_encoder_without_tokens_is_a_config_error_naming_the_modality() -> None:
    plan = {"encoders": {"image": {"width": 16}, "sound": {"modality": "waveform",
                                                           "family": "user_plugin_encoder:MeanPoolEncoder"}},
            "fusion": {"kind": "cross_attention"}, "head": {"kind": "classifier", "classes": 2}}
    with pytest.raises(ConfigError, match=r"model\.encoders\.sound: .*only a pooled vector"):
        build_model(plan)
    plan["fusion"] = {"kind": "attention_pooled"}
    build_model(plan)  # the pooled-vector fusions take it
    with pytest.raises(ConfigError, match="must divide width"):
        build_model({**plan, "fusion": {"kind": "cross_attention", "width": 30, "heads": 4}})


@pytest.mark.slow
def test_xmodal_train_cross_attention_on_emoji_pictures_and_names(tmp_path) -> None:
    """Real media end to end: Noto emoji glyphs beside emoji names, the label needing both (tests/test_fit.py's
    table); the picture's 16 positions and the name's word pieces attend to each other; ``xmodal train`` with
    ``cross_attention`` beats the majority baseline on the held-out rows, and either column's ceiling alone."""
    import json
    import subprocess
    import sys

    import yaml
    from test_fit import emoji_table

    table = emoji_table(tmp_path / "data", rows=160)
    recipe = {
        "task": "multimodal",
        "data": {"table": str(table), "fields": {"picture": "image", "name": "text"}, "target": "label",
                 "val_fraction": 0.25, "image_size": [32, 32]},
        "model": {"encoders": {"picture": {"width": 32, "channels_last": True},
                               "name": {"family": "transformer", "width": 32, "depth": 1, "heads": 2}},
                  "fusion": {"kind": "cross_attention", "width": 32, "heads": 2},
                  "head": {"kind": "classifier"}},
        "train": {"epochs": 12, "batch_size": 16, "lr": 2e-3, "eval_every": 0, "progress": False,
                  "tensorboard": False, "threads": 1, "checkpoint_every": 0},
    }
    path = tmp_path / "emoji.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "xmodal", "train", str(path), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert doc["n"] == 40 and doc["split"] == "val"
    # four classes, about a quarter each; each column alone tells half the label (at best 50%), so over 60%
    # needs both
    assert doc["model"]["accuracy"] >= doc["baselines"]["majority"]["accuracy"] + 0.4, doc
    assert doc["model"]["accuracy"] > 0.6, doc


def test_xmodal_train_exits_2_naming_the_field_whose_encoder_gives_no_tokens(tmp_path, monkeypatch, capsys) -> None:
    import sys

    import yaml
    from test_fit import emoji_table

    from xmodal.cli import main

    table = emoji_table(tmp_path / "data", rows=12)
    recipe = {"task": "multimodal",
              "data": {"table": str(table), "fields": {"picture": "image", "name": "categorical"}, "target": "label",
                       "val_fraction": 0.25, "image_size": [16, 16]},
              "model": {"encoders": {"picture": {"family": "user_plugin_encoder:MeanPoolEncoder"}, "name": "default"},
                        "fusion": {"kind": "cross_attention"}, "head": {"kind": "classifier"}},
              "train": {"epochs": 1, "batch_size": 4, "progress": False, "tensorboard": False}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["xmodal", "train", str(path), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "ConfigError: model.encoders.picture:" in err and "only a pooled vector" in err, err
