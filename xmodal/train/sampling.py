"""The data order and the per-sample random streams of training, independent of how the data is loaded.

Two things make a resumed run see exactly the batches and augmentations of an uninterrupted one, whatever
``train.num_workers`` is:

- The order: epoch ``e`` of rank ``r`` is ``DistributedSampler(seed, e)``'s list for that rank, cut into batches;
  resuming at batch ``k`` takes the same list from ``k * batch_size`` on. Nothing depends on the worker count.
- The randomness of a sample (augmentation drawn from torch's, numpy's or python's global RNG inside
  ``Dataset.__getitem__``): each sample is produced with the three global RNGs seeded from ``(seed, epoch,
  index)`` and restored afterwards. Without that, a worker's RNG stream would depend on which worker got which
  batch, and batches are handed to workers round-robin from the start of the loader, which moves on resume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sized
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` in epoch ``epoch`` of a run seeded ``seed`` (numpy's SeedSequence
    mixes the three, so neighbouring indices or epochs get unrelated streams)."""
    state = np.random.SeedSequence([seed % 2**63, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededSamples(Dataset):
    """``dataset`` addressed by ``(index, seed)``: the item is produced with the global RNGs seeded from ``seed``
    (torch, numpy, python) and every RNG is put back as it was, so loading a sample consumes no global state.
    A dataset with ``deterministic_items = True`` (its items draw no random numbers) is read as it is."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))  # a map-style dataset: torch's Dataset type declares no __len__

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if getattr(self.dataset, "deterministic_items", False):
            # the dataset declares that its items draw no random numbers: nothing to seed (saves ~0.2 ms a sample)
            return self.dataset[index]
        saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
        if torch.cuda.is_initialized():
            torch.manual_seed(seed)
        else:
            # the CPU generator is all a sample can draw from here; torch.manual_seed would also queue a lazy
            # seeding of every accelerator, recording a stack trace per call (milliseconds per sample)
            torch.default_generator.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(saved[0])
            np.random.set_state(saved[1])
            random.setstate(saved[2])

    def __getitems__(self, keys: list[tuple[int, int]]) -> Any:
        """A batch's items, for ``collate``: torch's DataLoader calls this instead of ``__getitem__`` per key.

        A deterministic dataset that defines ``__getitems__(indices)`` itself gets the batch's indices in one
        call (it may return one gathered batch that its collate accepts: the digits task skips 256 lookups and a
        stack that way). Any other dataset is read item by item, as before: a dataset whose items draw random
        numbers needs each one seeded on its own, so its own ``__getitems__`` is not used.
        """
        if getattr(self.dataset, "deterministic_items", False):
            batched = getattr(self.dataset, "__getitems__", None)
            if batched is not None:
                return batched([index for index, _ in keys])
        return [self[key] for key in keys]


def epoch_indices(size: int, seed: int, epoch: int, rank: int, world_size: int) -> list[int]:
    """This rank's sample order for ``epoch``: ``DistributedSampler`` (shuffled by ``(seed, epoch)``, drop_last)."""
    # the sampler only takes len() of its dataset: a range stands for one of ``size`` samples
    indices = cast(Dataset[int], range(size))
    sampler: DistributedSampler[int] = DistributedSampler(indices, num_replicas=world_size, rank=rank, shuffle=True,
                                                          seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(sampler)


def epoch_loader(
    dataset: Dataset,
    collate: Callable[[list[Any]], Any],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    batch_size: int,
    skip: int,
    steps: int,
    num_workers: int,
) -> Iterator[Any]:
    """Batches ``skip .. steps-1`` of ``epoch`` for this rank, each sample with its own ``(seed, epoch, index)``
    random stream: the same batches, bit for bit, for any ``num_workers`` and any resume point."""
    order = epoch_indices(len(cast(Sized, dataset)), seed, epoch, rank, world_size)  # map-style: it has a length
    chosen = order[skip * batch_size : steps * batch_size]
    if getattr(dataset, "deterministic_items", False):  # nothing to seed (SeededSamples reads them as they are)
        keys = [(i, 0) for i in chosen]
    else:
        keys = [(i, sample_seed(seed, epoch, i)) for i in chosen]
    # A generator of its own: the DataLoader draws worker seeds from it, not from the global RNG, so creating
    # a loader mid-epoch on resume leaves the global RNG exactly where the uninterrupted run had it.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    loader = DataLoader(SeededSamples(dataset), batch_size=batch_size, sampler=keys, drop_last=True,
                        collate_fn=collate, num_workers=num_workers, generator=generator)
    yield from loader
