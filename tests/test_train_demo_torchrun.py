"""The demo recipe under ``torchrun --nproc_per_node 2`` (gloo), shrunk with --set to a handful of steps on a
small subset of the real emoji/speech data (built into a temporary cache by rank 0 only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "demo_trimodal.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.distributed,
    pytest.mark.skipif(not RECIPE.exists(), reason="recipes/demo_trimodal.yaml is not there"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="the demo data needs espeak-ng (Debian package)"),
]


def test_demo_recipe_under_torchrun(tmp_path: Path) -> None:
    settings = ["data.options.max_groups=40", "model.embed_dim=32", "train.max_steps=4", "train.batch_size=8",
                "train.checkpoint_every=2", "train.progress=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "xmodal", "train", str(RECIPE), "--out", str(tmp_path / "run")]
    for item in settings:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XMODAL_DATA": str(tmp_path / "data")}
    env.pop(ckpt.FAULT_ENV, None)
    proc = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    latest = ckpt.find_latest(tmp_path / "run" / "checkpoints")
    assert latest is not None and latest.name == f"step_{4:09d}"
    state = json.loads((latest / ckpt.STATE).read_text())
    assert state["world_size"] == 2 and state["recipe"]["task"] == "trimodal_retrieval"
    metrics = json.loads((tmp_path / "run" / "train_result.json").read_text())["metrics"]
    pairs = {key.split("/")[0] for key in metrics} - {"mean"}  # "mean/R@1": the mean over pairs
    assert pairs == {f"{q}->{g}" for q in ("image", "audio", "text") for g in ("image", "audio", "text") if q != g}
