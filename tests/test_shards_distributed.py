"""ShardDataset under ``torchrun --nproc_per_node 2`` (gloo, two dataloader workers per rank): the ranks read
disjoint shards that together cover the folder, and the all-reduced progress counts every shard consumed."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xmodal.data.shards import source_from, write_shards

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_two_ranks_split_shards_and_agree_on_progress(tmp_path: Path) -> None:
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["key", "size", "y"])
        for i in range(8):
            w.writerow([f"s{i}", 0.5 * i * i, i % 2])
    write_shards(source_from(tmp_path / "t.csv", target="y"), tmp_path / "shards", shard_size=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "shard_rank_worker.py"), str(tmp_path / "shards"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # 4 shards of 2: rank 0 reads positions 0 and 2 (s0 s1 s4 s5), rank 1 positions 1 and 3
    assert sorted(ranks[0]["ids"]) == ["s0", "s1", "s4", "s5"]
    assert sorted(ranks[1]["ids"]) == ["s2", "s3", "s6", "s7"]
    assert ranks[0]["consumed"] == ranks[1]["consumed"] == 4
