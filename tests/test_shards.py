"""WebDataset shards of transformed real media, read back by the ``webdataset`` package itself (the
reference for the format) and by ShardDataset across ranks, workers, epochs and a resume."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from xmodal.data.shard_dataset import ShardDataset, ShardProgress
from xmodal.data.shards import iter_tar_samples, source_from, write_shards
from xmodal.errors import ConfigError

ALSA = sorted(Path("/usr/share/sounds/alsa").glob("*.wav"))
N = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import skimage.data as skd
    import trimesh
    from PIL import Image

    from xmodal.data.io import write_mesh
    from xmodal.data.manifest import write_manifest

    root = tmp_path_factory.mktemp("manifest")
    pics = [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.camera(), skd.logo()]
    shapes = [trimesh.creation.box(), trimesh.creation.icosphere(1)]
    rows = []
    for i in range(N):
        Image.fromarray(pics[i % 5]).resize((40, 40)).save(root / f"img{i}.png")
        shutil.copy(ALSA[i % len(ALSA)], root / f"snd{i}.wav")
        write_mesh(root / f"shape{i}.off", shapes[i % 2].vertices, shapes[i % 2].faces)
        rows.append({"id": f"item.{i}", "split": "train" if i < 8 else "val", "label": i % 2,
                     "image": f"img{i}.png", "audio": f"snd{i}.wav", "shape": f"shape{i}.off",
                     "caption": f"recording number {i} of a voice"})
    meta = {"name": "mini", "description": "real media", "sample_rate": 8000,
            "modalities": {"image": "image", "audio": "waveform", "shape": "mesh", "caption": "caption"}}
    return write_manifest(root, meta, rows)


@pytest.fixture(scope="module")
def shards(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xmodal.cli import app

    out = tmp_path_factory.mktemp("shards") / "out"
    res = CliRunner().invoke(app, ["data", "shard", str(dataset), "--out", str(out), "--shard-size", "3",
                                   "--no-cache"])
    assert res.exit_code == 0, res.output
    assert "10 samples in 4 shards" in res.output
    return out


def test_shards_hold_the_transformed_samples(dataset: Path, shards: Path) -> None:
    from xmodal.transforms import transform_for

    names = sorted(p.name for p in shards.glob("*.tar"))
    assert names == [f"shard-{i:06d}.tar" for i in range(4)] and not list(shards.glob("*.tmp"))
    samples = [s for n in names for s in iter_tar_samples(shards / n)]
    assert [s["id"] for s in samples] == [f"item.{i}" for i in range(N)]
    assert [s["label"] for s in samples] == [i % 2 for i in range(N)]
    first = samples[0]
    assert torch.equal(first["image"], transform_for("image")(dataset / "img0.png"))
    assert torch.equal(first["audio"], transform_for("waveform")(dataset / "snd0.wav"))
    mesh = transform_for("mesh")(dataset / "shape0.off")
    assert torch.equal(first["shape"]["edge_index"], mesh["edge_index"])
    assert first["caption"] == "recording number 0 of a voice"


def test_webdataset_reads_our_shards(shards: Path) -> None:
    import webdataset as wds

    urls = [str(p) for p in sorted(shards.glob("*.tar"))]
    got = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(got) == N
    assert set(got[0]) >= {"__key__", "json", "image.npy", "audio.npy", "shape.x.npy", "shape.edge_index.npy",
                           "caption.txt"}
    img = np.load(io.BytesIO(got[0]["image.npy"]), allow_pickle=False)
    assert img.shape == (3, 64, 64) and img.dtype == np.float32


def _ids(ds: ShardDataset, workers: int = 0) -> list[str]:
    loader = DataLoader(ds, batch_size=None, num_workers=workers)
    return [s["id"] for s in loader]


def test_ranks_and_workers_split_shards_without_overlap(shards: Path) -> None:
    per_rank = [_ids(ShardDataset(shards, rank=r, world_size=2), workers=2) for r in range(2)]
    # 4 shards dealt to 2 ranks: rank 0 gets positions 0 and 2, rank 1 positions 1 and 3
    assert sorted(per_rank[0]) == [f"item.{i}" for i in (0, 1, 2, 6, 7, 8)]
    assert sorted(per_rank[1]) == [f"item.{i}" for i in (3, 4, 5, 9)]
    three = [ShardDataset(shards, rank=r, world_size=3) for r in range(3)]
    got = [_ids(d) for d in three]
    assert sum(map(len, got)) == 9 and three[0].dropped == ["shard-000003.tar"]  # even split drops the last
    assert ShardDataset(shards, world_size=2).samples_per_rank() == 6


def test_epochs_shuffle_deterministically_and_resume_at_a_shard_boundary(shards: Path) -> None:
    a, b = ShardDataset(shards, shuffle=True, seed=3), ShardDataset(shards, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert a.epoch_order() == b.epoch_order()
        orders.append(a.epoch_order())
    assert len({tuple(o) for o in orders}) > 1 and all(sorted(o) == sorted(orders[0]) for o in orders)

    ds = ShardDataset(shards, shuffle=True, seed=3)
    ds.set_epoch(1)
    full = list(ds)
    assert sorted(s["id"] for s in full) == sorted(f"item.{i}" for i in range(N))
    plain = [s["id"] for s in ShardDataset(shards)]
    assert [s["id"] for s in full] != plain  # shards and the samples within them reordered
    progress = ShardProgress(ds)
    first_two = [s for s in full if s["__shard__"] < 2]
    progress.update([s["__shard__"] for s in first_two] + [full[-1]["__shard__"]])
    state = {"epoch": 1, "shards_consumed": progress.shards_consumed()}
    assert state["shards_consumed"] == 2  # the later shard's single sample does not count
    resumed = ShardDataset(shards, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [s["id"] for s in first_two + rest] == [s["id"] for s in full]
    with pytest.raises(ConfigError, match="shards_consumed=9"):
        resumed.load_state_dict({"epoch": 0, "shards_consumed": 9})


def test_table_source_and_refusals(tmp_path: Path, dataset: Path) -> None:
    import csv

    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pic", "size", "kind", "y"])
        for i in range(6):
            shutil.copy(dataset / f"img{i}.png", tmp_path / f"p {i}.png")
            w.writerow([f"p {i}.png", 1.5 * i + 0.25 * (i % 2), ["a", "b", "a"][i % 3], i % 2])
    index = write_shards(source_from(tmp_path / "t.csv", target="y"), tmp_path / "out", shard_size=4)
    assert index["fields"] == {"pic": "image", "size": "numeric", "kind": "categorical"}
    assert index["transforms"]["kind"]["state"] == {"vocab": {"<unknown>": 0, "a": 1, "b": 2}}
    samples = list(ShardDataset(tmp_path / "out"))
    assert [int(s["kind"]) for s in samples] == [1, 2, 1, 1, 2, 1]
    sizes = torch.stack([s["size"] for s in samples]).squeeze(1)
    assert abs(float(sizes.mean())) < 1e-6 and abs(float(sizes.std(unbiased=False)) - 1) < 1e-5  # standardised
    restored = ShardDataset(tmp_path / "out").transforms()  # fitted state round-trips through index.json
    assert int(restored["kind"]("b")) == 2 and int(restored["kind"]("new")) == 0
    mean = sum(1.5 * i + 0.25 * (i % 2) for i in range(6)) / 6
    assert abs(float(restored["size"](mean))) < 1e-6  # the training mean standardises to 0
    with pytest.raises(ConfigError, match="already holds shards"):
        write_shards(source_from(tmp_path / "t.csv", target="y"), tmp_path / "out")
    with pytest.raises(ConfigError, match="'nope' is not a column"):
        source_from(tmp_path / "t.csv", target="nope")


def test_shard_one_split_of_a_manifest(dataset: Path, tmp_path: Path) -> None:
    from xmodal.cli import app

    for split, ids in (("train", [f"item.{i}" for i in range(8)]), ("val", ["item.8", "item.9"])):
        res = CliRunner().invoke(app, ["data", "shard", str(dataset), "--out", str(tmp_path / split), "--split",
                                       split, "--no-cache"])
        assert res.exit_code == 0, res.output
        assert [s["id"] for s in ShardDataset(tmp_path / split)] == ids
    train, val = (json.loads((tmp_path / s / "index.json").read_text()) for s in ("train", "val"))
    assert train["transforms"] == val["transforms"]  # fitted on the training split both times
    with pytest.raises(ConfigError, match="no sample"):
        source_from(dataset, split="nope")
    table = tmp_path / "t.csv"
    table.write_text("x,y\n1,a\n2,b\n")
    with pytest.raises(ConfigError, match="only a manifest"):
        source_from(table, target="y", split="train")
