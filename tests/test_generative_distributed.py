"""A GAN's phased step under ``torchrun --nproc_per_node 2`` on CPU with gloo: a DDP run (unused parameters in
each phase are found) resumed from a mid-run checkpoint ends bit for bit where the uninterrupted one did, both
optimizers and the EMA included; FSDP2 trains it too, into a sharded checkpoint holding both optimizers.

Under FSDP2 the R1 penalty is off: it differentiates the discriminator inside the forward (a double backward),
and FSDP2 frees the gathered weights after that inner backward, before the outer one needs them.

Generative runs under FSDP2 evaluate (``eval_every``) and sample (``sample_every``) on full weights
(``distributed.full_weights``): diffusion (its EMA owned by the root FSDP2 module) and a VAE (whose ``sample``
runs the decoder of an FSDP2 block outside its forward, and whose decoder returns a view of its learnt
log-variance, which ``wrap_model`` copies before FSDP2 frees it). Every evaluation and every sample file equals
the one the same checkpoint gives in one process (``load_trained``, the path of ``xmodal generate``), with
tolerance 0: the gathered weights are the consolidated ones and the computation is the same."""

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
RECIPE = REPO / "recipes" / "generative_toy.yaml"
SMALL = ["model.backbone=gan", "data.distribution=ring", "data.n_train=256", "data.n_val=64", "model.hidden=32",
         "model.depth=2", "model.ema_decay=0.9", "train.max_steps=12", "train.batch_size=32",
         "train.checkpoint_every=4", "train.keep_last=5", "train.eval_every=0", "train.evaluate=false",
         "train.sample_every=0", "train.progress=false", "train.tensorboard=false", "train.threads=1"]

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def torchrun(out: Path, *settings: str, base: tuple[str, ...] = tuple(SMALL)) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "xmodal", "train", str(RECIPE), "--out", str(out)]
    for item in (*base, *settings):
        cmd += [item] if item.startswith("--") else ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(ckpt.FAULT_ENV, None)
    return subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=400, cwd=REPO)


def _final(out: Path, proc: subprocess.CompletedProcess) -> dict[str, torch.Tensor]:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{12:09d}"
    state = json.loads((latest / ckpt.STATE).read_text())
    assert state["world_size"] == 2 and len(state["scheduler"]) == 2
    tensors = ckpt.read_checkpoint(latest)[0]
    assert any(k.startswith("model/ema.module.") for k in tensors)
    assert any(k.startswith("optim/generator.") for k in tensors) and any(k.startswith("optim/discriminator.")
                                                                         for k in tensors)
    return tensors


def test_gan_under_torchrun_ddp_resumes_bit_exactly_and_fsdp_trains(tmp_path: Path) -> None:
    ddp = _final(tmp_path / "ddp", torchrun(tmp_path / "ddp"))
    root = tmp_path / "ddp" / "checkpoints"
    for step in (8, 12):
        shutil.rmtree(ckpt.step_dir(root, step))
    resumed = torchrun(tmp_path / "ddp", "--resume")
    assert "resuming from" in resumed.stderr, resumed.stderr[-3000:]
    again = _final(tmp_path / "ddp", resumed)
    assert again.keys() == ddp.keys() and all(torch.equal(again[k], ddp[k]) for k in ddp)

    fsdp = _final(tmp_path / "fsdp", torchrun(tmp_path / "fsdp", "train.strategy=fsdp", "model.r1_gamma=0"))
    assert fsdp.keys() == ddp.keys()
    state = json.loads((ckpt.find_latest(tmp_path / "fsdp" / "checkpoints") / ckpt.STATE).read_text())
    assert state["layout"] == "dcp"
    # the EMA, updated on the sharded weights after every step, lags the generator it averages
    assert not torch.equal(fsdp["model/ema.module.0.weight"], fsdp["model/generator.0.weight"])


def test_r1_under_fsdp_is_a_config_error_naming_the_option(tmp_path: Path) -> None:
    proc = torchrun(tmp_path / "r1", "train.strategy=fsdp", "model.r1_gamma=1", "train.max_steps=2")
    err = " ".join(proc.stderr.split())  # the CLI wraps its error line
    assert proc.returncode != 0
    assert "ConfigError: model.r1_gamma > 0 is not supported under train.strategy=fsdp" in err, err[-3000:]
    assert "storage of size 0" not in err


# 4 steps of 2 x 16 points, evaluated and sampled at step 2 and at the end, every checkpoint kept
EVALUATED = ["data.distribution=ring", "data.n_train=64", "data.n_val=48", "model.hidden=16", "model.depth=2",
             "model.timesteps=40", "model.sample_steps=8", "train.max_steps=4", "train.batch_size=16",
             "train.checkpoint_every=2", "train.keep_last=5", "train.eval_every=2", "train.sample_every=2",
             "train.sample_n=24", "train.strategy=fsdp", "train.progress=false", "train.tensorboard=false",
             "train.threads=1"]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("backbone", ["diffusion", "vae"])
def test_fsdp_evaluates_and_samples_as_one_process_does(tmp_path: Path, backbone: str) -> None:
    from xmodal.tasks.runs import load_trained

    run = tmp_path / backbone
    proc = torchrun(run, f"model.backbone={backbone}", base=tuple(EVALUATED))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    logged = [json.loads(line) for line in (run / "eval_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [2, 4]
    final = json.loads((run / "metrics.json").read_text())["model"]
    assert final == {"energy_distance": logged[-1]["energy_distance"]}
    for row in logged:
        directory = ckpt.step_dir(run / "checkpoints", row["step"])
        assert json.loads((directory / ckpt.STATE).read_text())["layout"] == "dcp"  # really sharded
        bundle, _, _ = load_trained(run, str(directory))
        assert bundle.evaluate is not None and bundle.generate is not None and bundle.val_set is not None
        with torch.no_grad():
            alone = bundle.evaluate(bundle.model, bundle.val_set)
        assert alone == {"energy_distance": row["energy_distance"]}, (row, alone)
        written = bundle.generate(bundle.model, 24, 0, tmp_path / f"{backbone}_{row['step']}")
        during = run / "samples" / f"step_{row['step']:09d}"
        assert sorted(p.name for p in during.iterdir()) == sorted(p.name for p in written)
        for path in written:
            assert (during / path.name).read_bytes() == path.read_bytes(), path.name
    # best/ holds the sharded checkpoint's dcp/ files: it loads, as the step it names
    best = json.loads((run / "best" / "best.json").read_text())
    assert best["value"] == min(row["energy_distance"] for row in logged)
    best_bundle, _, _ = load_trained(run, "best")
    kept, _ = ckpt.read_checkpoint(ckpt.step_dir(run / "checkpoints", best["step"]))
    for name, value in best_bundle.model.state_dict().items():
        assert torch.equal(value, kept[f"model/{name}"]), name
