"""Sample validation and batching with padding masks, on real clips and images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmodal.data.io import load_image_tensor, read_audio
from xmodal.data.sample import collate, validate_sample
from xmodal.errors import EmptyInputError, MissingModalityError, NonFiniteError, ShapeError

ALSA = Path("/usr/share/sounds/alsa")
pytestmark = pytest.mark.skipif(not ALSA.exists(), reason="alsa-utils sounds not installed")


def _samples() -> list[dict]:
    import skimage

    img_dir = Path(skimage.__file__).parent / "data"
    out = []
    for name, image in [("Front_Left", "astronaut.png"), ("Rear_Center", "coffee.png"), ("Side_Right", "chelsea.png")]:
        wav, _ = read_audio(ALSA / f"{name}.wav", 16000)
        out.append({"id": name, "image": load_image_tensor(img_dir / image, size=(32, 32)),
                    "audio": torch.from_numpy(wav), "caption": name.replace("_", " ").lower(), "label": len(out)})
    return out


def test_collate_stacks_pads_and_masks() -> None:
    samples = _samples()
    lengths = [s["audio"].shape[0] for s in samples]
    assert len(set(lengths)) == 3  # the three clips really differ in length
    batch = collate(samples, pad_modalities=["audio"])
    assert batch["id"] == ["Front_Left", "Rear_Center", "Side_Right"]
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["audio"].shape == (3, max(lengths))
    assert batch["audio_lengths"].tolist() == lengths
    assert batch["audio_mask"].dtype == torch.bool and batch["audio_mask"].sum(1).tolist() == lengths
    for i, s in enumerate(samples):
        torch.testing.assert_close(batch["audio"][i, :lengths[i]], s["audio"])
        assert not batch["audio"][i, lengths[i]:].any()  # padding is zeros
    assert batch["caption"] == ["front left", "rear center", "side right"]
    assert batch["label"].tolist() == [0, 1, 2]


def test_collate_pads_the_modality_length_axis() -> None:
    # (channels, time) waveforms pad their last axis; (points, xyz) clouds pad their first
    a, b = torch.zeros(2, 5), torch.ones(2, 3)
    batch = collate([{"id": "a", "waveform": a}, {"id": "b", "waveform": b}], pad_modalities=["waveform"])
    assert batch["waveform"].shape == (2, 2, 5) and batch["waveform_lengths"].tolist() == [5, 3]
    p, q = torch.ones(7, 3), torch.ones(4, 3)
    batch = collate([{"id": "p", "pts": p}, {"id": "q", "pts": q}], pad_modalities=["pts"],
                    modalities={"pts": "point_cloud"})
    assert batch["pts"].shape == (2, 7, 3) and batch["pts_mask"].sum().item() == 11
    batch = collate([{"id": "p", "x": p.T}, {"id": "q", "x": q.T}], pad_modalities={"x": 1})
    assert batch["x"].shape == (2, 3, 7)


def test_collate_refuses_unequal_unpadded_shapes() -> None:
    with pytest.raises(ShapeError, match="'audio'.*Front_Left"):
        collate(_samples())


def test_validate_sample_accepts_good_and_names_bad() -> None:
    s = _samples()[0]
    required = {"image": "image", "audio": "waveform", "caption": "caption"}
    assert validate_sample(s, required) is s
    with pytest.raises(EmptyInputError, match="Front_Left.*caption"):
        validate_sample({**s, "caption": "   "}, required)
    with pytest.raises(MissingModalityError, match="Front_Left.*'audio'"):
        validate_sample({k: v for k, v in s.items() if k != "audio"}, required)
    bad = s["image"].clone()
    bad[0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="Front_Left.*image"):
        validate_sample({**s, "image": bad}, required)
    with pytest.raises(EmptyInputError, match="Front_Left.*audio"):
        validate_sample({**s, "audio": torch.zeros(0)}, required)


def test_collate_accepts_numpy_and_keeps_objects_as_lists() -> None:
    batch = collate([{"id": "a", "x": np.ones(3, np.float32), "meta": {"k": 1}},
                     {"id": "b", "x": np.zeros(3, np.float32), "meta": {"k": 2}}])
    assert batch["x"].shape == (2, 3) and batch["meta"] == [{"k": 1}, {"k": 2}]
