"""``torchrun --nproc_per_node 2 -m xmodal train recipes/synthetic_pairs.yaml`` on CPU with gloo: DDP and FSDP2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xmodal.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "synthetic_pairs.yaml"
SMALL = ["data.n_train=512", "data.n_val=64", "train.epochs=2", "train.checkpoint_every=3", "train.progress=false"]

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def torchrun(out: Path, *settings: str) -> subprocess.CompletedProcess:
    # --standalone: a private rendezvous on a free port, so parallel test runs do not collide on 29500.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "xmodal", "train", str(RECIPE), "--out", str(out)]
    for item in (*SMALL, *settings):
        cmd += [item] if item.startswith("--") else ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(ckpt.FAULT_ENV, None)
    return subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=400, cwd=REPO)


def _check_run(out: Path, proc: subprocess.CompletedProcess) -> dict[str, torch.Tensor]:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{8:09d}"  # 512 / 2 ranks / 64 per step = 4 steps, x2 epochs
    state = json.loads((latest / ckpt.STATE).read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert (out / "log.csv").exists()
    result = json.loads((out / "train_result.json").read_text())
    assert result["steps"] == 8 and result["metrics"]["a2b/R@1"] > 5 * 100 / 64  # 5x chance on held-out pairs
    return ckpt.read_checkpoint(latest)[0]


def test_torchrun_ddp_and_fsdp_on_gloo(tmp_path: Path) -> None:
    ddp = _check_run(tmp_path / "ddp", torchrun(tmp_path / "ddp"))
    fsdp = _check_run(tmp_path / "fsdp", torchrun(tmp_path / "fsdp", "train.strategy=fsdp"))
    # The same optimisation, with the same data order and seeds: DDP averages gradients with an all-reduce,
    # FSDP2 with a reduce-scatter, so only the summation order differs (float32).
    model_keys = [k for k in ddp if k.startswith("model/")]
    assert model_keys and set(model_keys) == {k for k in fsdp if k.startswith("model/")}
    for key in model_keys:
        assert torch.allclose(ddp[key], fsdp[key], rtol=0, atol=1e-5), (key, (ddp[key] - fsdp[key]).abs().max())
    # FSDP2 checkpoints are sharded (torch.distributed.checkpoint, one file per rank), not gathered on rank 0
    latest = ckpt.find_latest(tmp_path / "fsdp" / "checkpoints")
    state = json.loads((latest / ckpt.STATE).read_text())
    assert state["layout"] == "dcp" and not (latest / ckpt.TENSORS).exists()
    assert sum(name.endswith(".distcp") for name in state["files"]) == 2 and f"{ckpt.DCP_DIR}/.metadata" in state["files"]

    # resume from the sharded checkpoint at step 6 (the last two removed): the same weights, bit for bit
    root = tmp_path / "fsdp" / "checkpoints"
    for step in (8,):
        shutil.rmtree(ckpt.step_dir(root, step))
    assert ckpt.find_latest(root) == ckpt.step_dir(root, 6)
    resumed = torchrun(tmp_path / "fsdp", "train.strategy=fsdp", "--resume")
    assert "resuming from" in resumed.stderr, resumed.stderr[-3000:]
    again = _check_run(tmp_path / "fsdp", resumed)
    assert again.keys() == fsdp.keys() and all(torch.equal(again[k], fsdp[k]) for k in fsdp)
