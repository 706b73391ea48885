"""Data order and augmentation independent of the loader: the same batches, bit for bit, with 0 or 2 workers and
from any resume point; loading a sample consumes no global random state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, default_collate

from xmodal.tasks import synthetic_pairs
from xmodal.tasks.generative_digits import DigitDataset, GatheredDigits, collate, split_digits
from xmodal.train.loop import to_device
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


# ------------------------------------------------------------------ batched reads of deterministic datasets
class _PerItemDigits(DigitDataset):
    """The digits read one item at a time (the path every dataset took before ``__getitems__``)."""

    __getitems__ = None  # type: ignore[assignment]


def _digit_batches(dataset: DigitDataset, num_workers: int = 0, skip: int = 0) -> list[dict]:
    # 1,200 digits at batch 64: 18 batches an epoch; epoch 3 of seed 5 (any shuffled order would do)
    return list(epoch_loader(dataset, collate, seed=5, epoch=3, rank=0, world_size=1, batch_size=64, skip=skip,
                             steps=18, num_workers=num_workers))


def test_gathered_digit_batches_equal_the_per_item_ones_bit_for_bit() -> None:
    """The digits task's one-call batch read gives the batches of 256 lookups and a stack: same values (tolerance
    0), dtypes, shapes, strides and ids, with workers and from a resume point; and they are sklearn's digits."""
    x16, y, _, _ = split_digits(1200, 0)
    gathered = DigitDataset(x16, y)
    calls: list[int] = []
    original = DigitDataset.__getitems__

    def counting(self: DigitDataset, indices: list[int]) -> GatheredDigits:
        calls.append(len(indices))
        return original(self, indices)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DigitDataset, "__getitems__", counting)
        ours = _digit_batches(gathered)
    assert calls == [64] * 18  # the loader took the batched path, one call a batch
    reference = _digit_batches(_PerItemDigits(x16, y))
    assert len(ours) == len(reference) == 18
    for got in (ours, _digit_batches(gathered, num_workers=2), [*reference[:7], *_digit_batches(gathered, skip=7)]):
        for a, b in zip(got, reference, strict=True):
            assert a["id"] == b["id"]
            for key in ("x", "label"):
                assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
                assert a[key].stride() == b[key].stride() and torch.equal(a[key], b[key])
    # independent of both paths: row k of a batch is sklearn's digit id[k], scaled to [-1, 1], and its label
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))[:1200]
    for batch in ours:
        rows = order[np.asarray(batch["id"])]
        assert torch.equal(batch["x"], torch.tensor(digits.data[rows] / 8.0 - 1.0, dtype=torch.float32))
        assert batch["label"].tolist() == digits.target[rows].tolist()


class _RandomItems(Dataset):
    """Items that draw from torch's global RNG, with a ``__getitems__`` that must not be used."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        return {"r": torch.rand(()), "id": index}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        raise AssertionError("a dataset whose items draw random numbers is read item by item")


def test_a_random_dataset_is_still_seeded_item_by_item() -> None:
    batches = list(epoch_loader(_RandomItems(), default_collate, seed=3, epoch=1, rank=0, world_size=1,
                                batch_size=8, skip=0, steps=5, num_workers=0))
    for batch in batches:
        for i, r in zip(batch["id"].tolist(), batch["r"], strict=True):
            expected = torch.rand((), generator=torch.Generator().manual_seed(sample_seed(3, 1, i)))
            assert torch.equal(r, expected)


def test_to_device_keeps_plain_lists_and_moves_nested_tensors() -> None:
    ids, t = [3, 1, 2], torch.arange(4.0)
    batch = to_device({"x": t, "id": ids, "pair": (t, "a"), "names": ["a", "b"], "empty": []}, torch.device("cpu"))
    assert batch["id"] == [3, 1, 2] and batch["names"] == ["a", "b"] and batch["empty"] == []
    assert torch.equal(batch["x"], t) and torch.equal(batch["pair"][0], t) and batch["pair"][1] == "a"
