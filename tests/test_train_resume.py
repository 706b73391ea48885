"""Checkpoints and resume: a run killed mid-way (SIGKILL) and resumed ends with the same weights, bit for bit,
as an uninterrupted run; a kill between a checkpoint's tensor file and its JSON commit marker leaves the previous
checkpoint in use."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xmodal.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "synthetic_pairs.yaml"
# 512 samples / batch 32 = 16 steps per epoch, 4 epochs = 64 steps; checkpoints at 10, 20, ... are mid-epoch.
# Dropout stays on, so equality also proves the RNG states were restored; two loader workers and a per-sample
# augmentation (jitter drawn from the global RNG in __getitem__) prove that the data do not depend on which worker
# loads which batch, which changes on resume.
SETTINGS = [
    "data.n_train=512", "data.n_val=64", "model.hidden=32", "model.embed_dim=16", "model.dropout=0.1",
    "data.augment=0.05", "train.num_workers=2",
    "train.epochs=4", "train.batch_size=32", "train.grad_accum=2", "train.checkpoint_every=10",
    "train.keep_last=2", "train.log_every=5", "train.warmup=5", "train.progress=false", "train.threads=1",
]
FINAL = 64


def _command(out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "xmodal", "train", str(RECIPE), "--out", str(out)]
    for item in SETTINGS:
        cmd += ["--set", item]
    return cmd + list(extra)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ckpt.FAULT_ENV}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _run(out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_command(out, *extra), env=_env(**env), check=False, capture_output=True, text=True, timeout=300, cwd=REPO)
    return proc


def _final_tensors(out: Path) -> dict[str, torch.Tensor]:
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{FINAL:09d}"
    return load_file(str(latest / ckpt.TENSORS))


def _assert_equal_runs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert any(k.startswith("optim/") for k in a)
    for key, value in a.items():  # tolerance 0: the same bits
        assert torch.equal(value, b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((ckpt.find_latest(out / "checkpoints") / ckpt.STATE).read_text())
    assert state["step"] == FINAL and state["epoch"] == 4 and state["batch_in_epoch"] == 0  # epochs 0-3 done
    result = json.loads((out / "train_result.json").read_text())
    assert result["metrics"]["a2b/R@1"] > 10 * 100 / 64  # learned something: 10x chance on 64 held-out pairs
    return _final_tensors(out)


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_weights(tmp_path: Path, reference: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)
    first = ckpt.step_dir(out / "checkpoints", 10)
    deadline = time.monotonic() + 240
    while ckpt.find_latest(out / "checkpoints") is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = ckpt.find_latest(out / "checkpoints")
    assert killed_at is not None and killed_at.name < f"step_{FINAL:09d}", "the run finished before the kill"
    assert first.exists() or killed_at.name > first.name

    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    _assert_equal_runs(_final_tensors(out), reference)
    # the CSV reads as one run: every logged step once, in order
    steps = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [*range(5, FINAL, 5), FINAL]  # every log_every steps, and the last one


@pytest.mark.slow
def test_kill_during_checkpoint_write_keeps_previous(tmp_path: Path, reference: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "torn"
    crashed = _run(out, **{ckpt.FAULT_ENV: "20"})  # SIGKILL after step 20's tensors, before its JSON
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    root = out / "checkpoints"
    torn = ckpt.step_dir(root, 20)
    assert (torn / ckpt.TENSORS).exists() and not (torn / ckpt.STATE).exists()
    latest = ckpt.find_latest(root)
    assert latest == ckpt.step_dir(root, 10)
    tensors, state = ckpt.read_checkpoint(latest)  # the previous checkpoint is whole and loadable
    assert state["step"] == 10 and any(k.startswith("model/") for k in tensors)

    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 10" in resumed.stderr
    _assert_equal_runs(_final_tensors(out), reference)
    assert [p.name for p in sorted(root.iterdir())] == [f"step_{s:09d}" for s in (60, 64)]  # keep_last=2


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(_command(out, "--resume"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=REPO)


@pytest.mark.slow
def test_kill_resume_loop_gives_identical_weights(tmp_path: Path, reference: dict[str, torch.Tensor]) -> None:
    """Kill and resume in a loop (the short CI version of benchmarks/stress_resume.py): each life of the run is
    killed as soon as it has written a checkpoint newer than the one it resumed from; the last one finishes."""
    out = tmp_path / "loop"
    root = out / "checkpoints"
    kills = 0
    for _ in range(3):
        before = ckpt.find_latest(root)
        proc = _start(out)
        deadline = time.monotonic() + 240
        while ckpt.find_latest(root) == before:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no new checkpoint appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
        kills += proc.returncode == -signal.SIGKILL
    latest = ckpt.find_latest(root)
    assert kills == 3 and latest is not None and latest.name < f"step_{FINAL:09d}"
    resumed = _run(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_equal_runs(_final_tensors(out), reference)
