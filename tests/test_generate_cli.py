"""``xmodal generate RUN_DIR --n N --seed S --out DIR``: PNG digits and report.html from a trained run, the same
files for the same seed, other samples for another seed, and typed errors (exit 2) for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.config.recipe import load_recipe
from xmodal.errors import ConfigError
from xmodal.tasks.base import build_task
from xmodal.train.loop import train

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
TINY = ["model.hidden=32", "model.timesteps=50", "model.sample_steps=5", "data.n_train=200", "data.eval_per_class=2",
        "train.max_steps=4", "train.batch_size=16", "train.eval_every=0", "train.evaluate=false",
        "train.sample_every=0", "train.progress=false", "train.tensorboard=false", "train.threads=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("digits_run")
    cfg = load_recipe(REPO / "recipes" / "generative_digits.yaml", TINY)
    torch.manual_seed(0)
    train(build_task(cfg), cfg, out_dir=out)
    return out


def _generate(*args: str):
    return runner.invoke(app, ["generate", *args], catch_exceptions=False)


def test_generate_writes_pngs_and_a_report(run_dir: Path, tmp_path: Path) -> None:
    result = _generate(str(run_dir), "--n", "12", "--seed", "3", "--out", str(tmp_path / "a"), "--checkpoint", "last")
    assert result.exit_code == 0, result.output
    a = tmp_path / "a"
    pngs = sorted(a.glob("sample_*.png"))
    assert [p.name for p in pngs][:3] == ["sample_0000_class0.png", "sample_0001_class1.png", "sample_0002_class2.png"]
    assert len(pngs) == 12 and pngs[11].name == "sample_0011_class1.png"
    with Image.open(pngs[0]) as im:
        assert im.size == (64, 64) and im.mode == "L"  # 8x8 digits, upscaled 8x
    with Image.open(a / "grid.png") as im:
        assert im.size == (10 * 66, 2 * 66)
    page = (a / "report.html").read_text()
    assert page.count("<img ") == 13 and 'src="sample_0000_class0.png"' in page and "generative_digits" in page
    assert page.count("<video ") == 1 and "denoising.mp4" in page
    info = json.loads((a / "generate.json").read_text())
    assert info["seed"] == 3 and info["n"] == 12 and info["modality"] == "image" and len(info["files"]) == 14

    # denoising.mp4, decoded by PyAV itself: one frame per DDIM step (TINY: 5) and the last one held for a
    # second (10 frames at 10 fps); its final frame is grid.png up to H.264's loss (stated: mean below 4 levels)
    import av
    import numpy as np

    with av.open(str(a / "denoising.mp4")) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
        assert float(stream.average_rate) == 10
    with Image.open(a / "grid.png") as im:
        grid = np.asarray(im, dtype=np.float64)
    assert len(frames) == 5 + 10 and frames[-1].shape == grid.shape
    assert np.abs(frames[-1].astype(np.float64) - grid).mean() < 4
    assert np.abs(frames[0].astype(np.float64) - grid).mean() > 4 * np.abs(frames[-1] - grid).mean()  # noise first

    again = _generate(str(run_dir), "--n", "12", "--seed", "3", "--out", str(tmp_path / "b"), "--checkpoint", "last")
    other = _generate(str(run_dir), "--n", "12", "--seed", "4", "--out", str(tmp_path / "c"), "--checkpoint", "last")
    assert again.exit_code == 0 and other.exit_code == 0
    same = [(a / p.name).read_bytes() == (tmp_path / "b" / p.name).read_bytes() for p in pngs]
    differ = [(a / p.name).read_bytes() != (tmp_path / "c" / p.name).read_bytes() for p in pngs]
    assert all(same) and sum(differ) >= 10  # the seed decides the samples (a digit may round to the same PNG)
    assert (a / "denoising.mp4").read_bytes() == (tmp_path / "b" / "denoising.mp4").read_bytes()


def test_generate_bad_input_is_a_typed_error(run_dir: Path, tmp_path: Path) -> None:
    def error(*args: str) -> str:
        result = runner.invoke(app, ["generate", *args])
        assert isinstance(result.exception, ConfigError), result.output  # xmodal.cli.main exits 2 on these
        return str(result.exception)

    assert "--n: must be >= 1" in error(str(run_dir), "--n", "0", "--out", str(tmp_path / "x"))
    assert "no such run directory" in error(str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"))
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert "is a file" in error(str(run_dir), "--out", str(afile), "--checkpoint", "last")
    assert "--checkpoint best" in error(str(run_dir), "--out", str(tmp_path / "y"))  # no evaluation, no best
    proc = subprocess.run([sys.executable, "-m", "xmodal", "generate", str(run_dir), "--n", "0", "--out",
                           str(tmp_path / "z")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "--n: must be >= 1" in proc.stderr
