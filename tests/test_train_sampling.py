"""Data order and augmentation independent of the loader: the same batches, bit for bit, with 0 or 2 workers and
from any resume point; loading a sample consumes no global random state."""

from __future__ import annotations

import torch

from xmodal.tasks import synthetic_pairs
from xmodal.train.sampling import epoch_indices, epoch_loader, sample_seed

CFG = {"data": {"n_train": 96, "n_val": 8, "augment": 0.5}}


def _batches(num_workers: int, skip: int = 0, epoch: int = 1) -> list[dict]:
    train_set, _ = synthetic_pairs.build_data(CFG)
    return list(epoch_loader(train_set, synthetic_pairs.collate, seed=7, epoch=epoch, rank=0, world_size=1,
                             batch_size=8, skip=skip, steps=12, num_workers=num_workers))


def test_workers_and_resume_point_do_not_change_batches() -> None:
    torch.manual_seed(0)
    reference = _batches(0)
    assert len(reference) == 12
    state = torch.get_rng_state()
    for workers, skip in ((2, 0), (2, 5), (0, 3), (2, 11)):
        got = _batches(workers, skip)
        assert len(got) == 12 - skip
        for ours, ref in zip(got, reference[skip:]):
            assert ours["id"] == ref["id"]
            assert torch.equal(ours["a"], ref["a"]) and torch.equal(ours["b"], ref["b"])
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG of the main process is untouched
    # augmentation is on (the jitter differs between epochs for the same sample) and the order follows the epoch
    other = _batches(0, epoch=2)
    assert [b["id"] for b in other] != [b["id"] for b in reference]
    train_set, _ = synthetic_pairs.build_data(CFG)
    i = reference[0]["id"][0]
    assert not torch.equal(reference[0]["a"][0], train_set.a[i])


def test_order_is_the_distributed_samplers() -> None:
    """Two ranks split one permutation of (seed, epoch) without overlap; the per-sample seeds differ."""
    ranks = [epoch_indices(96, 7, 1, r, 2) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(96))
    assert epoch_indices(96, 7, 1, 0, 2) == ranks[0] and epoch_indices(96, 7, 2, 0, 2) != ranks[0]
    seeds = {sample_seed(7, e, i) for e in range(3) for i in range(96)}
    assert len(seeds) == 3 * 96 and all(0 <= s < 2**63 for s in seeds)
