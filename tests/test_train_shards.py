"""The trainer on a shard folder (Fisher's iris measurements from scikit-learn, written as WebDataset shards): the
batch stream is the same for any worker count and any resume point, every sample is used at most once per epoch
(exactly once when the counts divide), and a run killed with SIGKILL mid-epoch and resumed trains on the same
batches and ends with the same weights, bit for bit, as an uninterrupted one (also under torchrun, 2 gloo ranks)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from xmodal.data.shard_dataset import ShardDataset
from xmodal.data.shards import ShardSource, write_shards
from xmodal.errors import ConfigError, CorruptFileError
from xmodal.train import checkpoint as ckpt
from xmodal.train.streaming import check_stream_state, in_shard_order, stream_batches, stream_state

REPO = Path(__file__).resolve().parents[1]
ID_LOG = "XMODAL_TEST_ID_LOG"


def _iris_rows() -> list[dict]:
    from sklearn.datasets import load_iris

    iris = load_iris()
    return [{"id": f"iris{i:03d}", "label": str(iris.target_names[y]), "measures": [float(v) for v in x]}
            for i, (x, y) in enumerate(zip(iris.data, iris.target))]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 training samples in 18 shards of 7 (the last holds 1), 30 validation samples."""
    root = tmp_path_factory.mktemp("iris")
    rows = _iris_rows()
    train = [r for i, r in enumerate(rows) if i % 5]
    val = [r for i, r in enumerate(rows) if not i % 5]
    for name, part in (("train", train), ("val", val)):
        write_shards(ShardSource(part, {"measures": "numeric"}, root, train), root / name, shard_size=7)
    return root


def _ids(batch: list[dict]) -> list[str]:
    return [s["id"] for s in batch]


def _stream(ds: ShardDataset, *, workers: int, skip: int = 0, world: int = 1, rank: int = 0, batch: int = 16,
            epoch: int = 1) -> list[list[str]]:
    steps = ds.min_samples_per_rank(world) // batch
    return list(stream_batches(ds, _ids, seed=0, epoch=epoch, rank=rank, world_size=world, batch_size=batch,
                               skip=skip, steps=steps, num_workers=workers))


def test_stream_is_independent_of_workers_and_resume_point(folders: Path) -> None:
    ds = ShardDataset(folders / "train", shuffle=True, seed=5)
    plain = _stream(ds, workers=0)
    assert len(plain) == 7  # 120 // 16
    assert _stream(ds, workers=2) == plain and _stream(ds, workers=2, skip=4) == plain[4:]
    flat = [i for b in plain for i in b]
    assert len(set(flat)) == len(flat) == 112  # no sample twice; 8 left over for the last, partial batch
    # the stream is the epoch's shard order, the samples of each shard in their seeded order
    ds.set_epoch(1)
    expected = [s["id"] for s in ds]
    assert flat == expected[:112]
    assert _stream(ds, workers=0, epoch=2) != plain  # another epoch, another order


def test_ranks_split_each_epoch_without_overlap(folders: Path) -> None:
    ds = ShardDataset(folders / "train", shuffle=True, seed=5)
    # 18 shards on 2 ranks: 9 each; every rank is sure of 1 + 8 * 7 = 57 samples, 7 batches of 8
    per_rank = [[i for b in _stream(ds, workers=2, world=2, rank=r, batch=8) for i in b] for r in range(2)]
    assert [len(p) for p in per_rank] == [56, 56] and not set(per_rank[0]) & set(per_rank[1])
    # 3 ranks: 6 shards each, so with 7-sample shards every sample but the short shard's is used exactly once
    even = ShardDataset(folders / "train")
    got = [[i for b in _stream(even, workers=1, world=3, rank=r, batch=1) for i in b] for r in range(3)]
    flat = [i for p in got for i in p]
    assert len(flat) == len(set(flat)) == 3 * (1 + 5 * 7)


def test_stream_state_names_the_position_and_refuses_other_shards(folders: Path, tmp_path: Path) -> None:
    ds = ShardDataset(folders / "train", shuffle=True, seed=5)
    ds.set_epoch(1)
    share = ds.assigned(0, 1)
    sizes = [ds.sizes[s] for _, s in share]
    state = stream_state(ds, 1, 1, 64)
    done = next(k for k in range(len(sizes) + 1) if sum(sizes[:k + 1]) > 64)
    assert state["ranks"] == [{"shards_done": done, "samples_into_shard": 64 - sum(sizes[:done])}]
    check_stream_state(ds, state, 1, 1, 64)
    with pytest.raises(CorruptFileError, match="does not match"):
        check_stream_state(ds, state, 1, 1, 80)
    other = tmp_path / "other"
    write_shards(ShardSource(_iris_rows()[:20], {"measures": "numeric"}, tmp_path, _iris_rows()[:20]), other,
                 shard_size=7)
    with pytest.raises(ConfigError, match="differ from those the checkpoint"):
        check_stream_state(ShardDataset(other), state, 1, 1, 64)
    # a shard that holds fewer samples than the index says is named
    tagged = [{"__shard__": share[0][0]}] * (sizes[0] - 1)
    with pytest.raises(CorruptFileError, match="index.json says"):
        list(in_shard_order(tagged, share[:1], ds.sizes))


# ------------------------------------------------------------------------------------------ whole runs
def _recipe(folders: Path, path: Path, **train: object) -> Path:
    recipe = {
        "task": "user_tasks.shard_logging",
        "data": {"shards": str(folders / "train"), "val_shards": str(folders / "val"), "kind": "classification"},
        "model": {"encoders": {"measures": {"family": "mlp", "dropout": 0.1}}, "fusion": {"kind": "concat"},
                  "head": {"kind": "classifier"}},
        "train": {"epochs": 6, "batch_size": 16, "lr": 0.01, "checkpoint_every": 4, "keep_last": 20,
                  "progress": False, "threads": 1, "num_workers": 2, "log_every": 5, **train},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def _env(log: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ckpt.FAULT_ENV}
    return {**env, "OMP_NUM_THREADS": "1", ID_LOG: str(log), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}


def _train_cmd(recipe: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xmodal", "train", str(recipe), "--out", str(out), *extra]


def _lines(log: Path, rank: int = 0) -> list[list[str]]:
    text = Path(f"{log}.rank{rank}").read_text()
    return [json.loads(line) for line in text.splitlines() if line.endswith("]")]


def _final(out: Path, step: int) -> dict[str, torch.Tensor]:
    latest = ckpt.find_latest(out / "checkpoints")
    assert latest is not None and latest.name == f"step_{step:09d}"
    return load_file(str(latest / ckpt.TENSORS))


def _resumed_step(stderr: str) -> int:
    found = re.search(r"resuming from .* \(step (\d+)\)", stderr.replace("\n", " "))
    assert found, stderr[-3000:]
    return int(found.group(1))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_sees_the_same_batches_and_weights(folders: Path, tmp_path: Path) -> None:
    recipe = _recipe(folders, tmp_path / "r.yaml")
    steps = 6 * 7
    ref = subprocess.run(_train_cmd(recipe, tmp_path / "ref"), env=_env(tmp_path / "ref.ids"), capture_output=True,
                         text=True, timeout=300, check=False, cwd=REPO)
    assert ref.returncode == 0, ref.stderr[-3000:]
    reference = _lines(tmp_path / "ref.ids")
    assert len(reference) == steps
    for epoch in range(6):  # every sample at most once per epoch
        ids = [i for b in reference[7 * epoch: 7 * epoch + 7] for i in b]
        assert len(ids) == len(set(ids)) == 112
    result = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert result["model"]["accuracy"] > result["baselines"]["majority"]["accuracy"] + 0.3

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(recipe, out), env=_env(tmp_path / "killed.ids"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 240
    while ckpt.find_latest(out / "checkpoints") is None:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    resumed = subprocess.run(_train_cmd(recipe, out, "--resume"), env=_env(tmp_path / "resumed.ids"),
                             capture_output=True, text=True, timeout=300, check=False, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    at = _resumed_step(resumed.stderr)
    assert 0 < at < steps and at % 7, "the kill was not mid-epoch"
    state = json.loads((ckpt.step_dir(out / "checkpoints", at) / ckpt.STATE).read_text())
    assert state["stream"]["ranks"][0]["samples_into_shard"] or state["stream"]["ranks"][0]["shards_done"]
    assert _lines(tmp_path / "killed.ids")[:at] + _lines(tmp_path / "resumed.ids") == reference
    final, expected = _final(out, steps), _final(tmp_path / "ref", steps)
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in expected)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_ranks_resume_mid_epoch(folders: Path, tmp_path: Path) -> None:
    recipe = _recipe(folders, tmp_path / "r.yaml", epochs=2, batch_size=8, checkpoint_every=3)
    steps = 2 * 7  # 57 samples every rank is sure of, 7 batches of 8

    def torchrun(log: Path, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "xmodal", "train", str(recipe), "--out", str(tmp_path / "run"), *extra]
        return subprocess.run(cmd, env=_env(log), capture_output=True, text=True, timeout=400, check=False, cwd=REPO)

    first = torchrun(tmp_path / "a.ids")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    ranks = [_lines(tmp_path / "a.ids", r) for r in range(2)]
    assert [len(r) for r in ranks] == [steps, steps]
    for epoch in range(2):
        mine = [{i for b in r[7 * epoch: 7 * epoch + 7] for i in b} for r in ranks]
        assert len(mine[0]) == len(mine[1]) == 56 and not mine[0] & mine[1]
    expected = _final(tmp_path / "run", steps)
    root = tmp_path / "run" / "checkpoints"
    for step in (12, 14):  # resume from step 9 (epoch 1, batch 2): a mid-epoch, mid-shard position
        shutil.rmtree(ckpt.step_dir(root, step))
    state = json.loads((ckpt.step_dir(root, 9) / ckpt.STATE).read_text())
    assert [r["samples_into_shard"] for r in state["stream"]["ranks"]] != [0, 0]
    again = torchrun(tmp_path / "b.ids", "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    assert _resumed_step(again.stderr) == 9
    assert [_lines(tmp_path / "b.ids", r) for r in range(2)] == [r[9:] for r in ranks]
    final = _final(tmp_path / "run", steps)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
