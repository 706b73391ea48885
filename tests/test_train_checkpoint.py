"""Checkpoint files: exact round trip of model + AdamW + RNG, JSON/safetensors only, keep-last-N, torn writes."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.tasks import synthetic_pairs
from xmodal.train import checkpoint as ckpt
from xmodal.train.loop import train

CFG = {"task": "synthetic_pairs", "data": {"n_train": 256, "n_val": 64}, "model": {"hidden": 16, "embed_dim": 8}}


def _trained_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    batch = bundle.collate([bundle.train_set[i] for i in range(32)])
    opt = torch.optim.AdamW(bundle.model.parameters(), lr=1e-2)
    for _ in range(2):
        bundle.loss(bundle.model(batch), batch).backward()
        opt.step()
        opt.zero_grad()
    return bundle.model, opt, batch


def test_round_trip_is_exact_and_has_no_pickle(tmp_path: Path) -> None:
    model, opt, batch = _trained_pair()
    tensors, optim_json = ckpt.gather_state(model, opt)
    path = ckpt.write_checkpoint(tmp_path, 2, tensors, {"optimizer": optim_json, "rng": [ckpt.rng_state()]}, keep_last=3)

    raw = (path / ckpt.TENSORS).read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]  # safetensors: u64 header size, then a JSON header
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"]["format"] == "pt"
    state = json.loads((path / ckpt.STATE).read_text())  # plain JSON, nothing to unpickle
    assert state["step"] == 2 and state["tensors_bytes"] == len(raw)

    torch.manual_seed(123)  # a different init, then load
    fresh = synthetic_pairs.build(CFG).model
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    loaded, loaded_state = ckpt.read_checkpoint(path)
    ckpt.restore_state(fresh, fresh_opt, loaded, loaded_state["optimizer"])
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    # one more identical step on both: optimizer moments and step counts were restored exactly
    for m, o in ((model, opt), (fresh, fresh_opt)):
        torch.manual_seed(7)
        m.train()
        synthetic_pairs.loss(m(batch), batch).backward()
        o.step()
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)


def test_rng_state_round_trip_through_json() -> None:
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    saved = json.loads(json.dumps(ckpt.rng_state()))
    expected = (torch.rand(4), np.random.rand(4), random.random())
    ckpt.set_rng_state(saved)
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1]) and random.random() == expected[2]


def test_latest_ignores_torn_checkpoints_and_keep_last_prunes(tmp_path: Path) -> None:
    tensors = {"model/w": torch.arange(6.0).reshape(2, 3)}
    for step in (10, 20, 30):
        ckpt.write_checkpoint(tmp_path, step, tensors, {}, keep_last=2)
    assert [p.name for _, p, ok in ckpt.list_checkpoints(tmp_path) if ok] == ["step_000000020", "step_000000030"]

    # step 40: tensors written, crash before the JSON marker
    torn = ckpt.step_dir(tmp_path, 40)
    torn.mkdir()
    (torn / ckpt.TENSORS).write_bytes(b"\x00" * 10)
    assert ckpt.find_latest(tmp_path) == ckpt.step_dir(tmp_path, 30)
    # step 50: marker present but the tensor file is truncated (size differs from the one recorded)
    ckpt.write_checkpoint(tmp_path, 50, tensors, {}, keep_last=5)
    with open(ckpt.step_dir(tmp_path, 50) / ckpt.TENSORS, "r+b") as fh:
        fh.truncate(20)
    assert ckpt.find_latest(tmp_path) == ckpt.step_dir(tmp_path, 30)
    with pytest.raises(ValueError, match="step_000000050"):
        ckpt.read_checkpoint(ckpt.step_dir(tmp_path, 50))

    ckpt.write_checkpoint(tmp_path, 60, tensors, {}, keep_last=2)  # prunes torn leftovers older than 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000030", "step_000000060"]
    loaded, state = ckpt.read_checkpoint(ckpt.find_latest(tmp_path))
    assert state["step"] == 60 and torch.equal(loaded["model/w"], tensors["model/w"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    bundle = synthetic_pairs.build(CFG)
    cfg = {"train": {"max_steps": 6, "batch_size": 32, "grad_accum": 2, "precision": precision, "log_every": 2,
                     "progress": False, "tensorboard": False, "lr": 3e-3}}
    result = train(bundle, cfg, out_dir=tmp_path)
    assert result.steps == 6 and result.final_loss is not None and np.isfinite(result.final_loss)
    assert [int(r["step"]) for r in result.history] == [2, 4, 6]
    assert result.history[-1]["loss"] < result.history[0]["loss"] + 0.5  # did not blow up
    state = json.loads((result.checkpoint / ckpt.STATE).read_text())
    assert (state["scaler"] is not None) == (precision == "fp16")


def test_resume_of_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    cfg = {"train": {"max_steps": 4, "batch_size": 32, "progress": False, "tensorboard": False, "log_every": 2}}
    torch.manual_seed(0)
    first = train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path)
    torch.manual_seed(0)
    again = train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path, resume=True)
    assert again.resumed_from == 4 and again.steps == 4 and again.final_loss == first.final_loss
    assert again.checkpoint == first.checkpoint and again.metrics == first.metrics
    assert [int(r["step"]) for r in again.history] == [2, 4]
