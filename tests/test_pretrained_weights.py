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
    assert set(load_state_dict(tmp_path / "ts.pt", torchscript=True)) == {"weight", "bias"}  # asked for by name
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(CorruptFileError):
        load_state_dict(tmp_path / "bad.pt")
    spec = WeightFile("plain.pt", hashlib.sha256((tmp_path / "plain.pt").read_bytes()).hexdigest(), "here")
    assert set(load_weights(spec, tmp_path)) == {"a", "b.c"}


class _Recorder(torch.nn.Module):
    """A scripted module whose ``__setstate__`` runs at ``torch.jit.load`` time and leaves a trace."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.loaded = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        return self.weight, self.loaded, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, torch.Tensor, bool]) -> None:
        self.weight = state[0]
        self.loaded = state[1] + 1.0  # code of the archive, executed by loading it
        self.training = state[2]


def test_torchscript_only_when_named_and_verified(tmp_path):
    """A TorchScript archive never loads as a state dict: its scripted ``__setstate__`` would run. It loads
    only for a spec that names its release as TorchScript and whose sha256 was checked."""
    path = tmp_path / "model.pt"
    torch.jit.script(_Recorder()).save(str(path))
    assert float(torch.jit.load(str(path)).loaded) == 1.0  # the archive's code does run on load
    with pytest.raises(CorruptFileError, match="TorchScript"):
        load_state_dict(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    plain = WeightFile("model.pt", digest, "here")
    with pytest.raises(CorruptFileError, match="TorchScript"):
        load_weights(plain, tmp_path)  # the spec does not say TorchScript, even with a matching digest
    named = WeightFile("model.pt", digest, "here", torchscript=True)
    with pytest.raises(CorruptFileError, match="TorchScript"):
        load_weights(named, tmp_path, check=False)  # unverified: an unknown file must be a plain state dict
    assert set(load_weights(named, tmp_path)) == {"weight"}  # a plain tensor attribute is no state entry
    with pytest.raises(ChecksumError):
        load_weights(WeightFile("model.pt", "0" * 64, "here", torchscript=True), tmp_path)


def test_pickle_with_code_is_refused(tmp_path):
    """A torch file whose pickle needs more than tensors fails ``weights_only`` and is an error, not a fallback."""
    torch.save({"w": torch.ones(1), "extra": WeightFile("x", None, "y")}, tmp_path / "obj.pt")
    with pytest.raises(CorruptFileError, match="cannot read weights"):
        load_state_dict(tmp_path / "obj.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}")
    with pytest.raises(CorruptFileError, match="safetensors"):
        load_state_dict(tmp_path / "bad.safetensors")
