"""Training on a stream of shards (:class:`~xmodal.data.shard_dataset.ShardDataset`), resumable bit for bit.

The trainer's map-style path fixes each rank's sample order by a sampler; a shard folder has no indices, so the
order is fixed by the shards instead:

- Epoch ``e`` deals the shards of ``ShardDataset.epoch_order()`` (shuffled by ``(seed, e)`` when the dataset
  shuffles) round-robin to the ranks. Rank ``r``'s stream is its shards in that dealt order, the samples of
  each in their stored (or seeded shuffled) order. Dataloader workers only read ahead: worker ``w`` of ``K``
  reads every K-th shard of the rank's share and :func:`in_shard_order` puts the samples back in stream order
  (at most about ``K`` shards are held), so the stream is the same for every ``num_workers``.
- Batches are consecutive runs of ``batch_size`` samples of the stream, across shard boundaries. Every rank
  takes the same number of steps per epoch: :func:`steps_per_epoch` counts the samples that every rank is
  sure to get (``min_samples_per_rank``); a rank's samples beyond them are not used that epoch, like a
  sampler's ``drop_last``.
- The stream position after ``k`` batches of an epoch is, per rank, the number of its shards done and the
  samples read into the next one (:func:`stream_position`). A checkpoint stores it for every rank with a digest
  of the shard layout; a resume skips the finished shards without reading them and discards the samples of
  the one partly trained on, so the resumed run trains on exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeGuard

import torch
from torch.utils.data import DataLoader, Dataset

from xmodal.errors import ConfigError, CorruptFileError

if TYPE_CHECKING:
    from xmodal.data.shard_dataset import ShardDataset


def is_stream(dataset: Dataset) -> TypeGuard[ShardDataset]:
    """Whether the trainer streams ``dataset`` by shards (a :class:`ShardDataset`)."""
    from xmodal.data.shard_dataset import ShardDataset

    return isinstance(dataset, ShardDataset)


def steps_per_epoch(dataset: Any, world_size: int, batch_size: int) -> int:
    """Batches every rank takes per epoch: the samples that every rank gets in every epoch, in whole batches."""
    return dataset.min_samples_per_rank(world_size) // batch_size


def _rank_share(dataset: Any, epoch: int, rank: int, world_size: int) -> tuple[Any, list[tuple[int, str]]]:
    """A copy of ``dataset`` set to the start of ``epoch`` for ``rank``, and the ``(position, shard)`` pairs
    of the rank's share in stream order."""
    view = copy.copy(dataset)
    view.set_epoch(epoch)
    view._rank, view._world = rank, world_size
    view.skip_own = 0
    return view, view.assigned(rank, world_size)


def stream_position(dataset: Any, epoch: int, rank: int, world_size: int, samples: int) -> dict[str, int]:
    """Where rank ``rank``'s stream of ``epoch`` is after ``samples`` samples: ``{"shards_done",
    "samples_into_shard"}`` (the rank's finished shards, and the samples read of the next one)."""
    _, share = _rank_share(dataset, epoch, rank, world_size)
    done = 0
    for _, shard in share:
        size = dataset.sizes[shard]
        if samples < size:
            break
        samples -= size
        done += 1
    return {"shards_done": done, "samples_into_shard": samples}


def stream_state(dataset: Any, epoch: int, world_size: int, samples: int) -> dict[str, Any]:
    """The stream position of every rank, for a checkpoint (every rank has read ``samples`` of ``epoch``)."""
    return {"epoch": epoch, "layout_sha256": dataset.layout_digest(), "shards": len(dataset.shards),
            "ranks": [stream_position(dataset, epoch, r, world_size, samples) for r in range(world_size)]}


def check_stream_state(dataset: Any, state: Any, epoch: int, world_size: int, samples: int) -> None:
    """A checkpoint's recorded stream position must be the one its step implies, on the same shard layout."""
    if not isinstance(state, dict):
        raise CorruptFileError(f"state.json field 'stream' is {state!r}: the checkpoint was not made on this "
                               "shard stream")
    if state.get("layout_sha256") != dataset.layout_digest():
        raise ConfigError(f"{dataset.directory}: the shards differ from those the checkpoint was trained on "
                          "(names or sample counts changed); resume on the same shard folder")
    if state != stream_state(dataset, epoch, world_size, samples):
        raise CorruptFileError(f"state.json field 'stream' ({state}) does not match epoch {epoch}, sample "
                               f"{samples} of the shards")


def in_shard_order(samples: Iterable[dict[str, Any]], share: list[tuple[int, str]],
                   sizes: dict[str, int]) -> Iterator[dict[str, Any]]:
    """``samples`` (tagged with ``__shard__``, each shard's in order, shards interleaved by the workers) in the
    order of ``share``: the head shard's samples as they come, the others held until it is complete."""
    held: dict[int, list[dict[str, Any]]] = {}
    head, got = 0, 0

    def advance() -> Iterator[dict[str, Any]]:
        nonlocal head, got
        while head < len(share) and got == sizes[share[head][1]]:
            head, got = head + 1, 0
            if head < len(share):
                for sample in held.pop(share[head][0], []):
                    got += 1
                    yield sample

    for sample in samples:
        if head < len(share) and sample["__shard__"] == share[head][0]:
            got += 1
            yield sample
            yield from advance()
        else:
            held.setdefault(sample["__shard__"], []).append(sample)
    yield from advance()
    if head < len(share):
        position, shard = share[head]
        raise CorruptFileError(f"shard holds {got} samples, index.json says {sizes[shard]}", source=shard)


def stream_batches(dataset: Any, collate: Callable[[list[Any]], Any], *, seed: int, epoch: int, rank: int,
                   world_size: int, batch_size: int, skip: int, steps: int, num_workers: int) -> Iterator[Any]:
    """Batches ``skip .. steps-1`` of ``epoch`` for rank ``rank``: the same batches for any ``num_workers``
    and any resume point (the finished shards of the rank are not read again)."""
    view, share = _rank_share(dataset, epoch, rank, world_size)
    position = stream_position(dataset, epoch, rank, world_size, skip * batch_size)
    view.skip_own = position["shards_done"]
    share = share[position["shards_done"]:]
    # Worker seeds come from a generator of its own, so a loader made mid-epoch leaves the global RNG alone.
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    loader = DataLoader(view, batch_size=None, num_workers=num_workers, generator=generator)
    stream = in_shard_order(loader, share, dataset.sizes)
    for _ in range(position["samples_into_shard"]):  # trained on before the checkpoint
        next(stream)
    for _ in range(skip, steps):
        batch = [next(stream) for _ in range(batch_size)]  # steps_per_epoch guarantees the samples exist
        yield collate(batch)
