"""Checkpoint files: exact round trip of model + AdamW + RNG, JSON/safetensors only, keep-last-N, torn writes."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from xmodal.errors import ConfigError, CorruptFileError
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


def _fresh_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A model of another init and its optimizer, for state to be restored into."""
    torch.manual_seed(123)
    fresh = synthetic_pairs.build(CFG).model
    return fresh, torch.optim.AdamW(fresh.parameters(), lr=1e-2)


def _assert_same_next_step(pairs: list[tuple[torch.nn.Module, torch.optim.Optimizer]], batch: dict) -> None:
    """One more identical step on each (model, optimizer): equal weights after it mean that the optimizer
    moments and step counts were restored exactly."""
    for m, o in pairs:
        torch.manual_seed(7)
        m.train()
        synthetic_pairs.loss(m(batch), batch).backward()
        o.step()
    (a, _), (b, _) = pairs
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_round_trip_is_exact_and_has_no_pickle(tmp_path: Path) -> None:
    model, opt, batch = _trained_pair()
    tensors, optim_json = ckpt.gather_state(model, opt)
    path = ckpt.write_checkpoint(tmp_path, 2, tensors, {"optimizer": optim_json, "rng": [ckpt.rng_state()]}, keep_last=3)

    raw = (path / ckpt.TENSORS).read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]  # safetensors: u64 header size, then a JSON header
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"]["format"] == "pt"
    state = json.loads((path / ckpt.STATE).read_text())  # plain JSON, nothing to unpickle
    assert state["step"] == 2 and state["tensors_bytes"] == len(raw)

    fresh, fresh_opt = _fresh_pair()  # a different init, then load
    loaded, loaded_state = ckpt.read_checkpoint(path)
    ckpt.restore_state(fresh, fresh_opt, loaded, loaded_state["optimizer"])
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    _assert_same_next_step([(model, opt), (fresh, fresh_opt)], batch)


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


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_anywhere_is_detected(tmp_path: Path) -> None:
    """sha256 per file and of the state itself: a flipped bit in the tensor data, in the safetensors header or in
    a state field is a CorruptFileError naming the file, though every size still matches."""
    tensors = {"model/w": torch.arange(64.0)}
    for step in (1, 2, 3):
        ckpt.write_checkpoint(tmp_path, step, tensors, {"epoch": 0}, keep_last=3)
    state = json.loads((ckpt.step_dir(tmp_path, 1) / ckpt.STATE).read_text())
    raw = (ckpt.step_dir(tmp_path, 1) / ckpt.TENSORS).read_bytes()
    assert state["files"][ckpt.TENSORS] == {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    _flip_bit(ckpt.step_dir(tmp_path, 1) / ckpt.TENSORS, len(raw) - 5)  # tensor data
    _flip_bit(ckpt.step_dir(tmp_path, 2) / ckpt.TENSORS, 12)  # JSON header of the safetensors file
    text = (ckpt.step_dir(tmp_path, 3) / ckpt.STATE).read_text()
    (ckpt.step_dir(tmp_path, 3) / ckpt.STATE).write_text(text.replace('"epoch": 0', '"epoch": 1'))
    assert ckpt.find_latest(tmp_path) == ckpt.step_dir(tmp_path, 3)  # sizes still match: "complete"
    for step, name in ((1, ckpt.TENSORS), (2, ckpt.TENSORS), (3, ckpt.STATE)):
        with pytest.raises(CorruptFileError, match="sha256") as err:
            ckpt.read_checkpoint(ckpt.step_dir(tmp_path, step))
        assert err.value.source == str(ckpt.step_dir(tmp_path, step) / name)


def test_load_latest_falls_back_and_names_the_skipped_one(tmp_path: Path) -> None:
    tensors = {"model/w": torch.ones(4)}
    for step in (10, 20, 30):
        ckpt.write_checkpoint(tmp_path, step, tensors, {"epoch": 0}, keep_last=3)
    _flip_bit(ckpt.step_dir(tmp_path, 30) / ckpt.TENSORS, -2)
    seen: list[int] = []

    def restore(directory: Path, state: dict) -> None:
        seen.append(state["step"])
        if state["step"] == 20:
            raise KeyError("optimizer")  # a field the run needs is missing: also a fall-back

    with pytest.warns(UserWarning) as record:
        path, state = ckpt.load_latest(tmp_path, restore)
    assert path == ckpt.step_dir(tmp_path, 10) and state["step"] == 10 and seen == [20, 10]
    messages = [str(w.message) for w in record]
    assert any("step_000000030" in m and "sha256" in m for m in messages)
    assert any("step_000000020" in m and "optimizer" in m for m in messages)
    _flip_bit(ckpt.step_dir(tmp_path, 10) / ckpt.TENSORS, -2)
    with pytest.warns(UserWarning), pytest.raises(CorruptFileError, match="no checkpoint could be restored"):
        ckpt.load_latest(tmp_path, restore)
    assert ckpt.load_latest(tmp_path / "empty", restore) is None


def test_resume_skips_a_corrupt_checkpoint_and_ends_identical(tmp_path: Path) -> None:
    """A run whose newest checkpoint has a flipped bit resumes from the previous one, with a warning naming the
    skipped one, and ends with the same weights (bit for bit) as the run that was never damaged."""
    cfg = {"train": {"max_steps": 12, "batch_size": 32, "checkpoint_every": 4, "keep_last": 3, "progress": False,
                     "tensorboard": False, "log_every": 4, "evaluate": False}}
    torch.manual_seed(0)
    whole = train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path / "whole")
    reference = load_file(str(whole.checkpoint / ckpt.TENSORS))
    torch.manual_seed(0)
    train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path / "hurt")
    root = tmp_path / "hurt" / "checkpoints"
    shutil.rmtree(ckpt.step_dir(root, 12))  # as if killed before the end; then damage step 8: step 4 is used
    _flip_bit(ckpt.step_dir(root, 8) / ckpt.TENSORS, -3)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="step_000000008"):
        resumed = train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path / "hurt", resume=True)
    assert resumed.resumed_from == 4 and resumed.steps == 12
    final = load_file(str(resumed.checkpoint / ckpt.TENSORS))
    assert final.keys() == reference.keys() and all(torch.equal(final[k], reference[k]) for k in final)


def test_resume_with_another_process_count_is_an_error(tmp_path: Path) -> None:
    """An epochs-based schedule depends on the process count: resuming a 2-process run in one process would
    silently double the total number of steps; it is refused unless train.elastic_resume asks for it."""
    cfg = {"train": {"epochs": 1, "batch_size": 32, "progress": False, "tensorboard": False, "evaluate": False}}
    torch.manual_seed(0)
    done = train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path)
    state_path = done.checkpoint / ckpt.STATE
    state = json.loads(state_path.read_text())
    state["world_size"], state["rng"] = 2, state["rng"] * 2  # as a 2-process run would have saved it
    state["state_sha256"] = ckpt._state_digest(state)
    state_path.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="elastic_resume"):
        train(synthetic_pairs.build(CFG), cfg, out_dir=tmp_path, resume=True)
    elastic = {"train": dict(cfg["train"], elastic_resume=True)}
    with pytest.warns(UserWarning, match="2 process"):
        train(synthetic_pairs.build(CFG), elastic, out_dir=tmp_path, resume=True)


def _off_boundary(t: torch.Tensor, floats: int) -> torch.Tensor:
    """A copy of ``t`` whose data starts ``floats`` float32s after a 64-byte boundary, as safetensors hands out
    tensors at their offsets in the file."""
    buf = torch.empty(t.numel() + 16, dtype=t.dtype)
    view = buf[floats : floats + t.numel()].view(t.shape)
    view.copy_(t)
    return view


def test_restored_state_sits_on_64_byte_boundaries(tmp_path: Path) -> None:
    """Restored weights and optimizer moments start on 64-byte boundaries, as an uninterrupted run's do (torch's
    CPU allocator), whatever the offsets of the tensors handed in. The layout matters for bits: MKL's sgemv
    rounds differently for a matrix that is not 16-byte aligned (and sdot for 8-byte offsets), on the same values
    and the same thread; today's AdamW uses only elementwise kernels, which do not depend on the address, but a
    restored tensor must not carry a file offset into whatever reads it next."""
    model, opt, batch = _trained_pair()
    tensors, optim_json = ckpt.gather_state(model, opt)
    shifted = {k: _off_boundary(v, 1 + i % 3) for i, (k, v) in enumerate(tensors.items())}
    assert all(v.data_ptr() % 16 for v in shifted.values())  # the test's premise: every input is off alignment
    fresh, fresh_opt = _fresh_pair()
    ckpt.restore_state(fresh, fresh_opt, shifted, optim_json)
    for name, p in fresh.named_parameters():
        assert p.data_ptr() % 64 == 0, name
        for slot, value in fresh_opt.state[p].items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                assert value.data_ptr() % 64 == 0, (name, slot)
                assert not any(value.untyped_storage().data_ptr() == s.untyped_storage().data_ptr()
                               for s in shifted.values()), (name, slot)  # a copy, not the caller's buffer
    _assert_same_next_step([(model, opt), (fresh, fresh_opt)], batch)  # and the next step is the same
