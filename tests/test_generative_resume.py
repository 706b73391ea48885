"""Generative runs through the trainer: a GAN (two optimizers stepped in turn, an EMA of the generator) and a
guided diffusion model (condition dropout, an EMA of the denoiser) killed by SIGKILL in the middle of writing a
checkpoint and resumed end with the same weights, optimizer moments, schedules and EMA, bit for bit, as runs that
were never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xmodal.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
COMMON = ["train.max_steps=30", "train.batch_size=32", "train.checkpoint_every=10", "train.keep_last=3",
          "train.log_every=5", "train.eval_every=0", "train.evaluate=false", "train.sample_every=0",
          "train.progress=false", "train.tensorboard=false", "train.threads=1", "train.warmup=3"]
RUNS = {
    "gan": ("generative_toy.yaml", ["model.backbone=gan", "data.distribution=ring", "data.n_train=256",
                                    "data.n_val=64", "model.hidden=32", "model.depth=2", "model.ema_decay=0.9"]),
    "diffusion": ("generative_digits.yaml", ["model.hidden=32", "model.timesteps=100", "model.ema_decay=0.9",
                                             "model.p_uncond=0.3", "data.n_train=256"]),
}


def _run(name: str, out: Path, *extra: str, fault: int | None = None) -> subprocess.CompletedProcess:
    recipe, settings = RUNS[name]
    cmd = [sys.executable, "-m", "xmodal", "train", str(REPO / "recipes" / recipe), "--out", str(out), *extra]
    for item in (*COMMON, *settings):
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != ckpt.FAULT_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if fault is not None:
        env[ckpt.FAULT_ENV] = str(fault)
    return subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=300, cwd=REPO)


def _final(out: Path) -> tuple[dict[str, torch.Tensor], dict]:
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{30:09d}"
    return load_file(str(latest / ckpt.TENSORS)), json.loads((latest / ckpt.STATE).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gan", "diffusion"])
def test_killed_and_resumed_run_is_bit_exact(tmp_path: Path, name: str) -> None:
    reference = _run(name, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    ref_tensors, ref_state = _final(tmp_path / "reference")

    crashed = _run(name, tmp_path / "killed", fault=20)  # SIGKILL after step 20's tensors, before its commit
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    assert ckpt.find_latest(tmp_path / "killed" / "checkpoints") == ckpt.step_dir(tmp_path / "killed" / "checkpoints", 10)
    resumed = _run(name, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 10" in resumed.stderr
    tensors, state = _final(tmp_path / "killed")

    assert tensors.keys() == ref_tensors.keys()
    ema = [k for k in tensors if k.startswith("model/ema.")]
    assert ema and any(k.startswith("optim/") for k in tensors)
    for key, value in ref_tensors.items():  # tolerance 0: the same bits, EMA and optimizer moments included
        assert torch.equal(tensors[key], value), key
    assert state["scheduler"] == ref_state["scheduler"] and state["optimizer"] == ref_state["optimizer"]
    source = "generator" if name == "gan" else "denoiser"
    averaged = {k[len("model/ema.module."):]: v for k, v in tensors.items() if k.startswith("model/ema.module.")}
    live = {k[len(f"model/{source}."):]: v for k, v in tensors.items() if k.startswith(f"model/{source}.")}
    assert averaged.keys() == live.keys() and any(not torch.equal(averaged[k], live[k]) for k in live)
    if name == "gan":  # two optimizers, each with its own schedule and its own betas
        assert len(state["scheduler"]) == 2
        groups = state["optimizer"]["param_groups"]
        assert {tuple(g["betas"]) for g in groups} == {(0.5, 0.9)}
        owned = [p for g in groups for p in g["params"]]
        assert all(p.startswith(("discriminator.", "generator.")) for p in owned) and len(owned) == len(set(owned))
        log = (tmp_path / "killed" / "log.csv").read_text().splitlines()
        assert log[0].split(",")[:5] == ["step", "epoch", "loss", "loss_discriminator", "loss_generator"]
        assert [int(line.split(",")[0]) for line in log[1:]] == list(range(5, 31, 5))
