"""Local weight loading: lookup order, aliases, sha256 (full digest and torch.hub prefix), formats."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from xmodal.errors import ChecksumError, CorruptFileError, MissingWeightsError
from xmodal.pretrained.weights import WeightFile, find_weights, load_state_dict, load_weights, verify_sha256


def test_lookup_order_aliases_and_missing(tmp_path, monkeypatch):
    spec = WeightFile("model.pth", None, "the model's release page", aliases=("model-old.pth",))
    monkeypatch.setenv("XMODAL_WEIGHTS", str(tmp_path / "env"))
    with pytest.raises(MissingWeightsError) as err:
        find_weights(spec, tmp_path)
    assert "model.pth" in str(err.value) and "release page" in str(err.value) and "env" in str(err.value)
    (tmp_path / "env").mkdir()
    torch.save({"w": torch.ones(2)}, tmp_path / "env" / "model-old.pth")
    assert find_weights(spec) == tmp_path / "env" / "model-old.pth"  # alias, through $XMODAL_WEIGHTS
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pth")
    assert find_weights(spec, tmp_path) == tmp_path / "model.pth"  # an explicit directory comes first
    assert find_weights(spec, tmp_path / "model.pth") == tmp_path / "model.pth"


def test_sha256_full_and_prefix(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    verify_sha256(f, digest)
    verify_sha256(f, digest[:8].upper())
    verify_sha256(f, None)
    with pytest.raises(ChecksumError, match=digest):
        verify_sha256(f, "0" * 64)


def test_formats(tmp_path):
    sd = {"a": torch.arange(3.0), "b.c": torch.ones(2, 2)}
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")
    save_file(sd, str(tmp_path / "w.safetensors"))
    scripted = torch.jit.script(torch.nn.Linear(2, 3))
    scripted.save(str(tmp_path / "ts.pt"))
    for name in ("plain.pt", "ckpt.pt", "w.safetensors"):
        out = load_state_dict(tmp_path / name)
        assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k]) for k in sd)
    assert set(load_state_dict(tmp_path / "ts.pt")) == {"weight", "bias"}  # TorchScript archive
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError):
        load_state_dict(tmp_path / "bad.pt")
    spec = WeightFile("plain.pt", hashlib.sha256((tmp_path / "plain.pt").read_bytes()).hexdigest(), "here")
    assert set(load_weights(spec, tmp_path)) == {"a", "b.c"}
