"""Sound source localisation: the written heatmaps and their scoring by hand, the silent-clip AUC against
scikit-learn, the two models' objectives (hand-worked triplet loss, LVS without silent clips equal to the
reference loss, both fitting a toy task), the Flickr-SoundNet scenes' silent negatives, and the whole recipe
reduced: build -> ``xmodal train`` -> ``xmodal predict`` -> ``xmodal eval sound-localization``, the model
beating every baseline."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from xmodal.cli import app, main
from xmodal.config import load_recipe
from xmodal.errors import ConfigError, DataError
from xmodal.metrics.localization import binarize_lvs, ciou
from xmodal.tasks import sound_localization as sl
from xmodal.tasks.models.attention_localiser import AttentionLocaliser, attention_loss, triplet_ratio_loss
from xmodal.tasks.models.lvs import LVSNet, debiased_nce, lvs_loss

REPO = Path(__file__).resolve().parents[1]
CI_OVERRIDES = ("--set", "train.eval_every=0")  # the recipe as committed, evaluated once at the end


@pytest.fixture(autouse=True)
def seeded(one_torch_thread):
    torch.manual_seed(0)


def test_floored_map_keeps_the_upper_part_of_its_range():
    heat = np.zeros((224, 224), np.float32)
    heat[:, 100:] = 0.4  # below half of the range: floored
    heat[50:100, 150:200] = 1.0
    out = sl.floored(heat, 0.5)
    assert set(np.unique(out)) == {0.0, 1.0} and out[50:100, 150:200].all() and out.sum() == 50 * 50
    assert np.array_equal(sl.floored(heat, 0.0), heat)  # floor 0: the map as given
    # flat over more than half the image, LVS's median threshold is the minimum: only the kept box is inside
    gt = np.zeros((224, 224))
    gt[50:100, 150:225] = 1  # 50 x 74 pixels; the kept 50 x 50 lie inside
    assert ciou(binarize_lvs(out), gt) == pytest.approx(50 * 50 / (50 * 74))
    small = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)  # resized 2 -> 224 first, as LVS resizes
    assert sl.floored(small, 0.5).shape == (224, 224)


def test_silent_auc_matches_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 9).round(1)  # rounded: ties count one half
    expected = 100 * roc_auc_score(np.r_[np.ones(40), np.zeros(9)], np.r_[pos, neg])
    assert sl.roc_auc(pos, neg) == pytest.approx(expected, abs=1e-9)


def test_triplet_ratio_loss_by_hand():
    anchor, positive, negative = torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])
    d_pos = 1 / (1 + math.e ** 5)  # distances 0 and 5: exp(0) / (exp(0) + exp(5))
    assert float(triplet_ratio_loss(anchor, positive, negative)) == pytest.approx(2 * d_pos**2, rel=1e-5)


def test_lvs_silent_clips_leave_the_infonce_rows():
    model = LVSNet(channels=(8, 16, 32), acoustic_dim=5)
    image, spec, acoustic = torch.randn(4, 3, 32, 32), torch.randn(4, 1, 16, 24), torch.randn(4, 5)
    with torch.no_grad():
        out = model(image, spec, acoustic)
    assert out["score"].shape == (4,) and torch.equal(out["score"], out["heatmap"].flatten(1).amax(-1))
    assert float(lvs_loss(out, torch.ones(4, dtype=torch.bool))) == pytest.approx(float(lvs_loss(out)))
    sounding = torch.tensor([True, True, False, True])
    rows = out["logits"][sounding]
    expected = torch.nn.functional.cross_entropy(rows, torch.zeros(3, dtype=torch.long))
    expected = expected + 0.5 * out["pos"][2].mean()
    assert float(lvs_loss(out, sounding, silent_weight=0.5)) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(Exception, match="acoustic"):
        model(image, spec)


def test_debiased_estimator_by_hand():
    # 3 clips at temperature 0.5 (lower bound exp(-1 / 0.5) = exp(-2)), tau_plus 0.2; columns: positive, the
    # three clips' audio (the row's own one ignored: 99 stands for the reference's pushed-out entry), hard negative
    logits = torch.tensor([[1.0, 99.0, 0.5, 2.0, -1.0],
                           [2.0, -1.0, 99.0, -1.0, 0.0],
                           [0.0, 1.0, 1.0, 99.0, 0.5]])
    # row 0: mean(e^0.5, e^2) = 4.51889; minus 0.2 e^1 = 0.54366, over 0.8: g = 4.96904 (above e^-2);
    # loss = log(e^1 + 2 g + e^-1) - 1 = log(13.02424) - 1
    row0 = math.log(math.e + 2 * ((math.exp(0.5) + math.exp(2.0)) / 2 - 0.2 * math.e) / 0.8 + math.exp(-1)) - 1
    assert row0 == pytest.approx(1.566812, abs=1e-6)
    # row 1: e^-1 - 0.2 e^2 < 0, so g is the bound e^-2: loss = log(e^2 + 2 e^-2 + e^0) - 2 = 0.158683
    row1 = math.log(math.exp(2) + 2 * math.exp(-2) + 1) - 2
    assert row1 == pytest.approx(0.158683, abs=1e-6)
    # row 2: mean(e^1, e^1) - 0.2 e^0 = 2.51828, over 0.8: g = 3.14785; loss = log(1 + 2 g + e^0.5) - 0
    row2 = math.log(1 + 2 * (math.e - 0.2) / 0.8 + math.exp(0.5))
    out = debiased_nce(logits, 0.2, 0.5)
    assert torch.allclose(out, torch.tensor([row0, row1, row2]), rtol=1e-5)
    # tau_plus 0 with the bound not reached: InfoNCE over the positive, the other clips and the hard negative
    keep = ~torch.eye(3, dtype=torch.bool)
    plain = torch.stack([torch.cat([r[:1], r[1:4][keep[i]], r[4:]]) for i, r in enumerate(logits)])
    reference = torch.nn.functional.cross_entropy(plain, torch.zeros(3, dtype=torch.long), reduction="none")
    assert torch.allclose(debiased_nce(logits, 0.0, 0.5), reference, rtol=1e-5)
    # without the hard-negative column the same rows lose its term
    assert float(debiased_nce(logits[:, :4], 0.2, 0.5)[1]) == pytest.approx(math.log(math.exp(2) + 2 * math.exp(-2)) - 2,
                                                                            rel=1e-5)
    # through lvs_loss: silent clip 1 leaves the rows and adds the mean of its Pos map
    outputs = {"logits": logits, "pos": torch.full((3, 2, 2), 0.25)}
    got = lvs_loss(outputs, torch.tensor([True, False, True]), silent_weight=2.0, tau_plus=0.2, temperature=0.5)
    assert float(got) == pytest.approx((row0 + row2) / 2 + 2.0 * 0.25, rel=1e-5)
    with pytest.raises(ConfigError, match="tau_plus"):
        debiased_nce(logits, 1.0, 0.5)


def test_attention_model_learns_a_supervised_box():
    """Four frames, each with a bright square in a different quadrant: the supervised attention loss moves
    the attention onto the square."""
    model = AttentionLocaliser(channels=(8, 16), temperature=0.1)
    image = torch.zeros(4, 3, 16, 16)
    target = torch.zeros(4, 16, 16)
    for k, (y, x) in enumerate([(0, 0), (0, 8), (8, 0), (8, 8)]):
        image[k, :, y:y + 8, x:x + 8] = 1
        target[k, y:y + 8, x:x + 8] = 1
    spec = torch.randn(4, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(60):
        loss = attention_loss(model(image, spec), target, mode="semi")
        opt.zero_grad()
        loss.backward()
        opt.step()
    alpha = model(image, spec)["heatmap"]
    inside = (alpha * torch.nn.functional.adaptive_avg_pool2d(target[:, None], alpha.shape[-2:])[:, 0]).sum((1, 2))
    assert (inside > 0.8).all(), inside
    with pytest.raises(ConfigError, match="needs ground-truth"):
        attention_loss(model(image, spec), None, mode="supervised")


@pytest.mark.slow  # builds 12 clips (and 3 silent twins) twice
def test_flickr_scenes_hold_silent_twins(tmp_path):
    from xmodal.data.benchmarks.flickr_soundnet import read_flickr_dir
    from xmodal.data.synth import scene_benchmarks_av as av

    a = av.build_flickr_soundnet(tmp_path / "a", n=12, seed=4, workers=1)
    listed = {s: (a / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    silent = json.loads((a / "silent.json").read_text())
    assert silent == {s: [f"{ids[0]}_silent"] for s, ids in listed.items()}  # index 0 of each split
    assert set(read_flickr_dir(a / "Annotations")) == set(listed["test"])  # twins have no annotation
    scenes = {json.loads(line)["id"]: json.loads(line) for line in (a / "scenes.jsonl").read_text().splitlines()}
    for (twin,) in silent.values():
        original = twin.removesuffix("_silent")
        assert not any(o["sounding"] for o in scenes[twin]["objects"])
        assert sum(bool(o["sounding"]) for o in scenes[original]["objects"]) == 1
        # the same picture: only the sound is gone
        assert (a / "frames" / f"{twin}.jpg").read_bytes() == (a / "frames" / f"{original}.jpg").read_bytes()
        rms = np.sqrt(np.mean(sf_read(a / "audio" / f"{twin}.wav").astype(np.float64) ** 2))
        assert rms < 10 ** (-40 / 20) * 1.05  # the background noise alone, -50 to -40 dBFS RMS
    b = av.build_flickr_soundnet(tmp_path / "b", n=12, seed=4, workers=2)  # rebuilt: byte-identical files
    for name in ("silent.json", "train.txt", "test.txt", "scenes.jsonl",
                 *(f"Annotations/{i}.xml" for i in listed["test"])):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow  # builds 12 clips and decodes them
def test_flickr_layout_reads_as_a_task(tmp_path):
    from xmodal.data.synth import scene_benchmarks_av as av
    from xmodal.metrics.localization import flickr_gt_map
    from xmodal.tasks.base import build_task

    root = av.build_flickr_soundnet(tmp_path / "f", n=12, seed=4, workers=2)
    recipe = REPO / "recipes" / "sound_localization.yaml"
    with pytest.raises(ConfigError, match=r"model\.floor"):
        build_task(load_recipe(recipe, [f"data.root={root}", f"data.cache={tmp_path / 'c'}"]))
    bundle = build_task(load_recipe(recipe, [f"data.root={root}", f"data.cache={tmp_path / 'c'}", "model.floor=0.5",
                                             "model.mode=unsupervised"]))
    assert bundle.artifacts["benchmark"] == "flickr"
    test_ids = (root / "test.txt").read_text().split()
    held = bundle.val_set
    assert held.ids == [*test_ids, "scene_test_4_000000_silent"]
    assert [bool(held[i]["sounding"]) for i in range(len(held))] == [True] * len(test_ids) + [False]
    from xmodal.data.benchmarks.flickr_soundnet import read_flickr_xml

    first = read_flickr_xml(root / "Annotations" / f"{test_ids[0]}.xml")  # the annotators' consensus map
    assert np.array_equal(held.split.truth[test_ids[0]],
                          flickr_gt_map([(b.xmin, b.ymin, b.xmax, b.ymax) for b in first.boxes]))
    assert held[0]["visual_map"].shape == (len(held[0]["visual_map"]), 7, 7)
    with pytest.raises(ConfigError, match="no boxes"):
        build_task(load_recipe(recipe, [f"data.root={root}", f"data.cache={tmp_path / 'c'}", "model.floor=0.5"]))
    metrics = bundle.evaluate(bundle.model, held)  # an untrained model, scored end to end
    assert {"ciou", "auc", "mean_ciou", "floor", "silent_auc"} <= set(metrics)


def sf_read(path: Path) -> np.ndarray:
    from xmodal.data.io import read_audio

    return read_audio(path)[0]


def test_bad_settings_are_typed_errors(tmp_path):
    from xmodal.tasks.base import build_task

    recipe = REPO / "recipes" / "sound_localization.yaml"
    assert load_recipe(recipe)["task"] == "sound_localization"
    with pytest.raises(ConfigError, match=r"model\.floor"):
        build_task(load_recipe(recipe, ["model.floor=1.5"]))
    with pytest.raises(ConfigError, match=r"data\.image_size"):
        build_task(load_recipe(recipe, ["data.image_size=100"]))
    with pytest.raises(DataError, match="neither vggss.json"):
        build_task(load_recipe(recipe, [f"data.root={tmp_path}"]))
    (tmp_path / "vggss.json").write_text("[]")
    with pytest.raises(DataError, match="vggss_train.json"):
        build_task(load_recipe(recipe, [f"data.root={tmp_path}"]))


def _eval(monkeypatch, capsys, *args: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["xmodal", "eval", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    assert (exit_info.value.code or 0) == 0, out.err
    return json.loads(out.out)


@pytest.mark.slow  # builds 200 clips, decodes them, trains 48 steps (the sprite encoder: once per machine)
def test_build_train_predict_eval_beats_baselines(tmp_path: Path, monkeypatch, capsys) -> None:
    from xmodal.data.benchmarks.vggss import read_vggss
    from xmodal.data.synth.scene_benchmarks_av import build_vggss

    root = build_vggss(tmp_path / "vggss", n=200, seed=7, workers=2)
    run = tmp_path / "run"
    args = ["train", str(REPO / "recipes" / "sound_localization.yaml"), "--out", str(run),
            "--set", f"data.root={root}", "--set", f"data.cache={tmp_path / 'cache'}", *CI_OVERRIDES]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["primary"] == "auc" and doc["split"] == "test"
    assert set(doc["baselines"]) == {"centre", "random", "largest_object", "objectness"}
    model = doc["model"]
    for name, base in doc["baselines"].items():
        assert model["ciou"] > base["ciou"] + 10 and model["auc"] > base["auc"] + 5, (name, model, base)
    res = CliRunner().invoke(app, ["predict", str(run), "--out", str(tmp_path / "heatmaps.npz")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    with np.load(tmp_path / "heatmaps.npz") as npz:
        assert set(npz.files) == {r.file for r in read_vggss(root / "vggss.json")}
        assert all(npz[k].shape == (224, 224) for k in npz.files)
    scores = _eval(monkeypatch, capsys, "sound-localization", "--annotations", str(root / "vggss.json"),
                   "--predictions", str(tmp_path / "heatmaps.npz"))
    best = json.loads((run / "best" / "best.json").read_text())["metrics"]
    assert scores == pytest.approx({k: best[k] for k in ("ciou", "auc", "mean_ciou")}, abs=1e-9)


def test_sound_encoder_audio_branch_reads_the_embeddings():
    """``model.audio: sound``: the frozen sound encoder's per-second embeddings, pooled by mean and maximum over
    the seconds (checked by hand against the MLP's input), are what the models see of the audio."""
    cfg = load_recipe(REPO / "recipes" / "sound_localization.yaml", ["model.name=lvs", "model.audio=sound"])
    _, m = sl._configs(cfg)
    model = sl.LocalisationModel(m)
    assert isinstance(model.net.audio_encoder, sl.EmbeddingMLP)
    emb = torch.randn(4, 3, 128)
    seen = {}
    first = model.net.audio_encoder.net[0]
    first.register_forward_hook(lambda mod, args, out: seen.update(x=args[0]))  # returns None: output kept
    batch = {"visual_map": torch.rand(4, 27, 7, 7), "sound_embedding": emb, "acoustic": torch.randn(4, 18),
             "spectrogram": torch.full((4, 1, 64, 10), float("nan"))}  # never read with this branch
    out = model(batch)
    assert out["heatmap"].shape == (4, 7, 7) and torch.isfinite(out["logits"]).all()
    assert torch.equal(seen["x"], torch.cat([emb.mean(1), emb.amax(1)], -1))
