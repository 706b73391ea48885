"""Multilabel targets through shards: a table of Unicode character names (Python's own Unicode database) whose
delimited label sets are each letter's script, case and accent, sharded with ``xmodal data shard`` and trained
from the shard folders, gives per sample id the multi-hot targets that training from the table gives, the same
label map in the run directory, and the same held-out metrics (full-batch training, so that the order in which
the stream and the table's sampler deliver samples cannot matter beyond float rounding: to 1e-6)."""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xmodal.cli import app
from xmodal.errors import DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")


def _letters() -> list[dict[str, str]]:
    """Letters of the Latin-1, Latin Extended-A, Greek and Cyrillic blocks: the lower-cased Unicode name as text;
    labels: the script, the case, and ``accented`` for letters named "... WITH <mark>"."""
    rows = []
    for code in list(range(0xC0, 0x180)) + list(range(0x391, 0x3CA)) + list(range(0x410, 0x450)):
        name = unicodedata.name(chr(code), "")
        script = name.split(" ")[0]
        if script not in SCRIPTS or " LETTER " not in name or not ({"CAPITAL", "SMALL"} & set(name.split())):
            continue
        tags = [script.lower(), "upper" if " CAPITAL " in name else "lower"] + (["accented"] if " WITH " in name
                                                                                else [])
        rows.append({"id": f"u{code:04x}", "name": name.lower(), "tags": "|".join(tags)})
    return rows[::3]  # every third letter: small and fast


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("letters")
    rows = _letters()
    for i, r in enumerate(rows):
        r["split"] = "val" if i % 4 == 0 else "train"
    _write(root / "table.csv", rows)
    runner = CliRunner()
    for split in ("train", "val"):
        part = [{k: v for k, v in r.items() if k != "split"} for r in rows if r["split"] == split]
        _write(root / f"{split}.csv", part)
        res = runner.invoke(app, ["data", "shard", str(root / f"{split}.csv"), "--target", "tags", "--out",
                                  str(root / f"shards_{split}"), "--shard-size", "16", "--no-cache"])
        assert res.exit_code == 0, res.output
    return root


def _cfg(data: Path, source: str) -> dict:
    where = ({"table": str(data / "table.csv"), "val_split": "val"} if source == "table"
             else {"shards": str(data / "shards_train"), "val_shards": str(data / "shards_val")})
    n_train = sum(1 for r in csv.DictReader(open(data / "train.csv", encoding="utf-8")))  # noqa: SIM115
    return {"task": "multimodal",
            "data": {**where, "fields": {"name": "text"}, "target": "tags", "kind": "multilabel"},
            "model": {"encoders": {"name": {"family": "transformer", "width": 32, "depth": 1, "heads": 2}},
                      "fusion": {"kind": "concat"}, "head": {"kind": "classifier"}},
            "eval": {"primary": "mean_average_precision"},
            # one batch of every training sample per epoch: the loss is then the same mean in any sample order
            "train": {"epochs": 15, "batch_size": n_train, "lr": 5e-3, "progress": False, "tensorboard": False,
                      "threads": 1, "checkpoint_every": 0, "eval_every": 0, "seed": 0}}


def _targets(samples: object) -> dict[str, list[float]]:
    return {s["id"]: s["tags"].tolist() for s in samples}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_shards_give_the_tables_multi_hot_targets_label_map_and_metrics(data: Path, tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task
    from xmodal.train.loop import seed_everything, train

    bundles, docs = {}, {}
    for source in ("table", "shards"):
        cfg = _cfg(data, source)
        seed_everything(0)  # as `xmodal train` does before building: the same initial weights
        bundles[source] = build_task(cfg)
        train(bundles[source], cfg, out_dir=tmp_path / source)
        docs[source] = json.loads((tmp_path / source / "metrics.json").read_text())
    table, shards = bundles["table"], bundles["shards"]
    labels = json.loads((tmp_path / "table" / "labels.json").read_text())
    assert labels == ["accented", "cyrillic", "greek", "latin", "lower", "upper"]
    assert json.loads((tmp_path / "shards" / "labels.json").read_text()) == labels
    # the same multi-hot vector per sample id, in training and in validation
    train_table = _targets(table.train_set[i] for i in range(len(table.train_set)))
    assert _targets(shards.train_set) == train_table and len(train_table) > 40
    assert _targets(shards.val_set) == _targets(table.val_set[i] for i in range(len(table.val_set)))
    sample = next(iter(shards.train_set))
    expected = {"u00c1": [1, 0, 0, 1, 0, 1]}  # LATIN CAPITAL LETTER A WITH ACUTE: accented, latin, upper
    assert all(train_table.get(k, v) == v for k, v in expected.items()) and sample["tags"].dtype == torch.float32
    # the same metrics: the model's and the prior baseline's
    assert docs["table"]["n"] == docs["shards"]["n"] and docs["table"]["primary"] == "mean_average_precision"
    for part in ("model", "baselines"):
        a, b = docs["table"][part], docs["shards"][part]
        flat_a = a if part == "model" else a["prior"]
        flat_b = b if part == "model" else b["prior"]
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert abs(flat_a[k] - flat_b[k]) <= 1e-6, (part, k, flat_a[k], flat_b[k])
    assert docs["shards"]["model"]["mean_average_precision"] > docs["shards"]["baselines"]["prior"][
        "mean_average_precision"] + 0.2, docs


def test_a_label_unseen_in_the_training_shards_is_named(data: Path, tmp_path: Path) -> None:
    from xmodal.tasks.base import build_task

    rows = [{"id": "odd", "name": "latin small letter q", "tags": "latin|lower|cursive"}]
    _write(tmp_path / "odd.csv", rows * 2)
    res = CliRunner().invoke(app, ["data", "shard", str(tmp_path / "odd.csv"), "--target", "tags", "--out",
                                   str(tmp_path / "odd"), "--no-cache"])
    assert res.exit_code == 0, res.output
    cfg = _cfg(data, "shards")
    cfg["data"]["val_shards"] = str(tmp_path / "odd")
    with pytest.raises(DataError, match="'cursive' never occurs in the training shards"):
        build_task(cfg)
