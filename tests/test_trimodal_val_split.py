"""The demo's validation split (``data.val_percent``): carved from the training emoji groups only, whole groups
(skin-tone variants stay with their base), stable, and standardising the log-mels with the remaining training
items only; the held-out test split is untouched. ``model.audio_norm`` accepts only mask-exact norms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from xmodal.errors import ConfigError
from xmodal.tasks import trimodal_retrieval as task

GROUPS = 200  # 100 test groups, 100 training groups; 3 items (a base and two tones) per group


def _dataset(tmp_path: Path) -> Path:
    """A manifest with ``GROUPS`` groups of three items; the media are never read (features are faked)."""
    root = tmp_path / "ds"
    root.mkdir()
    meta = {"name": "fake", "version": 1, "modalities": {"image": "image", "caption": "caption", "audio": "waveform"},
            "sample_rate": 22050}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    rows = [{"id": f"g{g}-{k}", "group": f"g{g}", "split": "test" if g % 2 else "train",
             "image": f"images/g{g}-{k}.png", "caption": f"emoji {g} tone {k}", "audio": f"audio/g{g}-{k}.flac"}
            for g in range(GROUPS) for k in range(3)]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def _fake_features(files: list[Any], captions: list[str], *args: Any) -> dict[str, torch.Tensor]:
    """Item ``i``'s single recording: 2 frames of 4 mel bins, all equal to ``i`` (so the standardisation's
    mean is the mean item index of the training split)."""
    n = len(files)
    frames = torch.arange(n).repeat_interleave(2)[:, None].expand(-1, 4).to(torch.float16)
    return {"images": torch.zeros(n, 3, 2, 2, dtype=torch.uint8), "mel_frames": frames,
            "mel_offsets": torch.arange(0, 2 * n + 1, 2), "text": torch.zeros(n, 384)}


def _items(root: Path, monkeypatch: pytest.MonkeyPatch, **data: Any) -> task.TrimodalItems:
    monkeypatch.setattr(task, "_cached_features", _fake_features)
    return task._load_features(root, task.DataConfig(**data), progress=False)


def test_val_split_is_whole_training_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _dataset(tmp_path)
    plain = _items(root, monkeypatch)
    assert set(plain.splits) == {"train", "test"}
    items = _items(root, monkeypatch, val_percent=20)
    group = {i: i.split("-")[0] for i in items.ids}
    by_split: dict[str, set[str]] = {}
    for item, split in zip(items.ids, items.splits, strict=True):
        by_split.setdefault(split, set()).add(group[item])
    # the test split is exactly what it was; val only takes training groups, each one whole
    assert [s == "test" for s in items.splits] == [s == "test" for s in plain.splits]
    assert by_split["val"].isdisjoint(by_split["train"]) and by_split["val"].isdisjoint(by_split["test"])
    # a hash share of 100 training groups: 20 expected, binomial sd 4
    assert 8 <= len(by_split["val"]) <= 32
    assert len(by_split["train"]) + len(by_split["val"]) == GROUPS // 2
    # stable (same seed, same split) and seeded (another seed, another split)
    assert _items(root, monkeypatch, val_percent=20).splits == items.splits
    assert _items(root, monkeypatch, val_percent=20, val_seed=1).splits != items.splits


def test_val_items_do_not_enter_the_standardisation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame of item ``i`` is ``i``, so the standardised value of an item is ``(i - mean) / std`` over the
    frames of the training items, worked out here by hand for the remaining training items, and compared with
    what it would be if the val items still counted as training (the two differ by far more than the
    tolerance, 0.01 for the float16 storage)."""
    root = _dataset(tmp_path)
    items = _items(root, monkeypatch, val_percent=30)
    train = [i for i, s in enumerate(items.splits) if s == "train"]
    val = [i for i, s in enumerate(items.splits) if s == "val"]
    assert val and train

    def standardised(i: int, among: list[int]) -> float:
        frames = torch.tensor([float(j) for j in among]).repeat_interleave(2)
        return (i - frames.mean().item()) / frames.std().item()

    probe = max(range(len(items.ids)), key=lambda i: abs(standardised(i, train) - standardised(i, train + val)))
    assert abs(standardised(probe, train) - standardised(probe, train + val)) > 0.05  # not vacuous
    assert float(items.mel(probe, 0)[0, 0]) == pytest.approx(standardised(probe, train), abs=1e-2)


def test_datasets_follow_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _dataset(tmp_path)
    cfg = task.DataConfig(val_percent=20)
    items = _items(root, monkeypatch, val_percent=20)
    train, val = task.TrimodalDataset(items, "train", cfg, True), task.TrimodalDataset(items, "val", cfg, False)
    assert len(train) + len(val) == 3 * GROUPS // 2
    assert set(train.indices).isdisjoint(val.indices)


@pytest.mark.parametrize("value", [-1, 100])
def test_val_percent_out_of_range_is_a_config_error(value: int) -> None:
    with pytest.raises(ConfigError, match="data.val_percent"):
        task.check({"data": {"val_percent": value}})


def test_audio_norm_is_mask_exact_only() -> None:
    with pytest.raises(ConfigError, match="model.audio_norm"):
        task.model_plan({"model": {"audio_norm": "batch"}})
    assert task.model_plan({"model": {"audio_norm": "none"}})["encoders"]["audio"]["norm"] == "none"
