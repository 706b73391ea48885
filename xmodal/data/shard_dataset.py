"""``ShardDataset``: stream the shards of :mod:`xmodal.data.shards` across ranks and dataloader workers.

Each epoch orders the shards (shuffled by ``seed + epoch`` when ``shuffle``, which also reorders the samples
within each shard, one shard in memory at a time), skips the first
``shards_consumed`` of that order (resume), and deals the rest round-robin: rank ``r`` of ``W`` takes every
W-th shard from position ``r``, and worker ``w`` of ``K`` within a rank every K-th of those. The split is a
pure function of (seed, epoch, shards_consumed, rank, world size, worker count), so every process agrees
without communicating. With ``even=True`` (the default) the shards left over after dealing an equal number to
every rank are dropped for that epoch (and named in ``dropped``), so DDP ranks see the same number of shards.

Every sample carries ``"__shard__"``: the position of its shard in the epoch's order. A trainer resumes at a
shard boundary by saving ``{"epoch", "shards_consumed"}`` where ``shards_consumed`` is the length of the
prefix of positions whose every sample has been trained on (:class:`ShardProgress` tracks it); samples of
later, partly read shards are read again after a resume. The trainer resumes more finely (any step, bit for
bit): it streams each rank's shards in their dealt order whatever the worker count and records how many of
this rank's shards it finished (:mod:`xmodal.train.streaming`); ``skip_own`` is that count.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import IterableDataset, get_worker_info

from xmodal.data.shards import iter_tar_meta, iter_tar_samples, read_index
from xmodal.errors import ConfigError


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset):
    """Samples of a shard directory; see the module docstring for the split and resume rules."""

    def __init__(self, directory: str | Path, *, shuffle: bool = False, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, even: bool = True,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """``shuffle``: a new shard order every epoch and the samples of each shard in a new order (one shard
        is held in memory at a time); both drawn from ``seed``, the epoch and the shard's position.
        ``transform`` maps every sample as it is read (in the worker: label indices, text tokens)."""
        super().__init__()
        self.directory = Path(directory)
        self.index = read_index(self.directory)
        self.shards = [s["name"] for s in self.index["shards"]]
        self.sizes = {s["name"]: int(s["samples"]) for s in self.index["shards"]}
        self.shuffle, self.seed, self.even = shuffle, seed, even
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.shards_consumed = 0
        self.dropped: list[str] = []
        self.skip_own = 0  # shards of this rank's share already trained on (the trainer's resume)
        self.transform = transform

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.index["fields"])

    def transforms(self) -> dict[str, Any]:
        """The fitted transforms the shards were written with (to transform new data the same way)."""
        from xmodal.transforms import restore_transforms

        return restore_transforms(self.index.get("transforms", {}))

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first shard (the sampler convention of DistributedSampler)."""
        self.epoch, self.shards_consumed = int(epoch), 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shards_consumed": self.shards_consumed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        epoch, consumed = int(state["epoch"]), int(state["shards_consumed"])
        if not 0 <= consumed <= len(self.shards):
            raise ConfigError(f"shards_consumed={consumed} is outside [0, {len(self.shards)}] for {self.directory}")
        self.epoch, self.shards_consumed = epoch, consumed

    def epoch_order(self) -> list[str]:
        """Every shard of the epoch, in the order it is dealt."""
        order = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return order

    def assigned(self, rank: int, world_size: int, worker: int = 0, num_workers: int = 1,
                 skip: int = 0) -> list[tuple[int, str]]:
        """``(position in the epoch order, shard)`` pairs that this rank's worker reads, in order; ``skip``
        leaves out the first shards of the rank's share before dealing the rest to workers."""
        order = self.epoch_order()
        positions = list(range(self.shards_consumed, len(order)))
        if self.even:
            usable = len(positions) // world_size * world_size
            self.dropped = [order[p] for p in positions[usable:]]
            positions = positions[:usable]
        mine = positions[rank::world_size][skip:][worker::num_workers]
        return [(p, order[p]) for p in mine]

    def min_samples_per_rank(self, world_size: int) -> int:
        """Samples that every rank gets in every epoch, whatever the shuffle: every rank reads at least
        ``len(shards) // world_size`` shards, so at least the sum of that many smallest shards."""
        per_rank = len(self.shards) // world_size
        return sum(sorted(self.sizes.values())[:per_rank])

    def layout_digest(self) -> str:
        """sha256 of the shard names and sizes in index order: what a recorded stream position refers to."""
        layout = [(s, self.sizes[s]) for s in self.shards]
        return hashlib.sha256(json.dumps(layout).encode()).hexdigest()

    def labels(self) -> list[Any]:
        """The stored label of every sample, in index order (reads only the ``.json`` members)."""
        out = []
        for shard in self.shards:
            out += [m.get("label") for m in iter_tar_meta(self.directory / shard)]
        return out

    def samples_per_rank(self, world_size: int | None = None) -> int:
        """Samples each rank yields this epoch (the even split; the largest share otherwise)."""
        world = world_size or self._world or _dist_rank_world()[1]
        counts = [sum(self.sizes[s] for _, s in self.assigned(r, world)) for r in range(world)]
        return max(counts) if counts else 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = _dist_rank_world()
        rank = self._rank if self._rank is not None else rank
        world = self._world if self._world is not None else world
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, shard in self.assigned(rank, world, worker, workers, self.skip_own):
            samples = iter_tar_samples(self.directory / shard)
            if self.shuffle:
                samples = list(samples)
                random.Random((self.seed * 1_000_003 + self.epoch) * 100_003 + position).shuffle(samples)
            for sample in samples:
                if self.transform is not None:
                    sample = self.transform(sample)
                sample["__shard__"] = position
                yield sample


class ShardProgress:
    """Counts the samples trained on per shard position of the epoch; :meth:`shards_consumed` is the longest
    prefix of positions whose samples are all done. Under torch.distributed each rank counts its own shards
    and :meth:`shards_consumed` sums the counts over ranks (a collective: call it on every rank)."""

    def __init__(self, dataset: ShardDataset) -> None:
        self.sizes = [dataset.sizes[s] for s in dataset.epoch_order()]
        self.start = dataset.shards_consumed
        self.seen = [0] * len(self.sizes)

    def update(self, positions: Any) -> None:
        """Record a batch's ``__shard__`` positions (a tensor or a list)."""
        for p in (positions.tolist() if hasattr(positions, "tolist") else list(positions)):
            self.seen[int(p)] += 1

    def shards_consumed(self) -> int:
        import torch
        import torch.distributed as dist

        seen = self.seen
        if dist.is_available() and dist.is_initialized():
            total = torch.tensor(seen, dtype=torch.int64)
            dist.all_reduce(total)
            seen = total.tolist()
        consumed = self.start
        while consumed < len(self.sizes) and seen[consumed] >= self.sizes[consumed]:
            consumed += 1
        return consumed
