"""FID Inception: official key set, TF1 resize and forward equal torch-fidelity 0.4.0's on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from sklearn.datasets import load_sample_images

from vision_reference import import_submodule
from xmodal.errors import ChecksumError, MissingWeightsError
from xmodal.pretrained import inception_fid
from xmodal.pretrained.inception_fid import FIDInceptionV3, fid_inception_v3, resize_bilinear_tf1

FIXTURE = Path(__file__).parent / "fixtures" / "inception_fid_keys.json"


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official key set and shapes (BatchNorm variances kept positive)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in json.loads(FIXTURE.read_text()).items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("bn.weight"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out[key] = torch.randn(shape, generator=g) / np.sqrt(fan_in)
    return out


def real_images() -> list[np.ndarray]:
    """Real photographs of several sizes: skimage astronaut (512x512), chelsea (300x451), coffee (400x600) and
    sklearn's china.jpg (427x640)."""
    return [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), load_sample_images().images[0]]


def to_uint8_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, h, w) uint8


def test_state_dict_matches_official_key_set():
    ours = {k: list(v.shape) for k, v in FIDInceptionV3().state_dict().items()}
    assert ours == json.loads(FIXTURE.read_text())
    assert len(ours) == 566


def test_tf1_resize_equals_torch_fidelity_on_real_images():
    ref = import_submodule("torch_fidelity", "interpolate_compat_tensorflow").interpolate_bilinear_2d_like_tensorflow1x
    for img in real_images():
        x = to_uint8_batch(img).float()
        for size in [(299, 299), (224, 224), (64, 97)]:  # up- and down-sampling, non-square
            ours = resize_bilinear_tf1(x, size)
            theirs = ref(x, size=size, align_corners=False)
            assert torch.equal(ours, theirs), (img.shape, size)  # bit-exact, as torch-fidelity's CPU "slow" path


@pytest.mark.slow
def test_forward_equals_torch_fidelity_with_the_same_weights(tmp_path):
    fe = import_submodule("torch_fidelity", "feature_extractor_inceptionv3")
    state = random_official_state_dict()
    path = tmp_path / inception_fid.WEIGHTS.filename
    torch.save(state, path)
    ref = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased", "logits"],
                                         feature_extractor_weights_path=str(path))
    ours = fid_inception_v3(tmp_path, check=False)
    for img in real_images()[1:2]:  # chelsea; one image keeps the CPU time low
        x = to_uint8_batch(img)
        with torch.no_grad():
            pool3, unbiased, logits = ref(x)
            out = ours(x)
        assert out["pool3"].shape == (1, 2048) and out["logits_unbiased"].shape == (1, 1008)
        for a, b in [(out["pool3"], pool3), (out["logits_unbiased"], unbiased), (out["logits"], logits)]:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())


def test_missing_and_corrupt_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("XMODAL_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="pt_inception-2015-12-05-6726825d.pth") as err:
        fid_inception_v3(tmp_path)
    assert "pytorch-fid" in str(err.value)
    (tmp_path / inception_fid.WEIGHTS.filename).write_bytes(b"not the weights")
    with pytest.raises(ChecksumError, match="6726825d"):
        fid_inception_v3()  # found through $XMODAL_WEIGHTS, rejected by the sha256 prefix
