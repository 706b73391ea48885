"""Run under torchrun by tests/test_shards_distributed.py: read a shard folder on this rank with two
dataloader workers, count progress, and write what this rank saw to OUT/rank<r>.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader

from xmodal.data.shard_dataset import ShardDataset, ShardProgress


def main(shards: str, out: str) -> None:
    dist.init_process_group("gloo")
    ds = ShardDataset(shards)
    progress = ShardProgress(ds)
    ids = []
    for sample in DataLoader(ds, batch_size=None, num_workers=2):
        ids.append(sample["id"])
        progress.update([sample["__shard__"]])
    consumed = progress.shards_consumed()  # all-reduced over ranks
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps({"ids": ids, "consumed": consumed}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
