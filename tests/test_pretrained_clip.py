"""CLIP ViT-B/32: OpenAI's key set, towers equal openai/CLIP's model code (clip-anytorch 2.6.0) with the same
weights, tokenizer equal to its SimpleTokenizer, preprocessing equal to the reference on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from vision_reference import import_submodule
from xmodal.errors import MetricInputError
from xmodal.pretrained.clip import CLIP, SimpleTokenizer, clip_vit_b32, preprocess_image

FIXTURE = Path(__file__).parent / "fixtures" / "clip_vit_b32_keys.json"

# Real captions: the first docstring line of each skimage.data image (see environment notes).
IMAGES = ["astronaut", "chelsea", "coffee", "rocket"]


def captions() -> list[str]:
    return [getattr(skimage.data, n).__doc__.strip().splitlines()[0] for n in IMAGES]


@pytest.fixture(scope="module")
def reference_model():
    return import_submodule("clip", "model")


def test_state_dict_matches_openai_key_set():
    ours = {k: list(v.shape) for k, v in CLIP().state_dict().items()}
    assert ours == json.loads(FIXTURE.read_text())


def test_tokenizer_equals_openai_simple_tokenizer():
    ref = import_submodule("clip", "simple_tokenizer").SimpleTokenizer()
    ours = SimpleTokenizer()
    texts = captions() + ["A photo depicts “naïve” café &amp; co — 3D!", "Hello   WORLD's  don't"]
    for t in texts:
        assert ours.encode(t) == ref.encode(t), t
    toks = ours.tokenize(texts)
    assert toks.shape == (len(texts), 77) and toks.dtype == torch.long
    assert (toks[:, 0] == ours.sot).all() and (toks.argmax(dim=1) > 0).all()
    with pytest.raises(MetricInputError):
        ours.tokenize("word " * 100)
    long = ours.tokenize("word " * 100, truncate=True)
    assert long[0, -1] == ours.eot


@pytest.mark.slow
def test_towers_equal_reference_with_same_weights(reference_model, tmp_path):
    ref = reference_model.CLIP(512, 224, 12, 768, 32, 77, 49408, 512, 8, 12).eval()
    state = ref.state_dict()
    torch.save({**state, "input_resolution": torch.tensor(224)}, tmp_path / "ViT-B-32.pt")
    ours = clip_vit_b32(tmp_path, check=False)  # also drops the TorchScript file's config entries
    pixels = torch.stack([preprocess_image(Image.fromarray(getattr(skimage.data, n)())) for n in IMAGES[:2]])
    tokens = SimpleTokenizer().tokenize(["A photo depicts " + c for c in captions()[:2]])
    with torch.no_grad():
        assert torch.allclose(ours.encode_image(pixels), ref.encode_image(pixels), atol=1e-5)
        assert torch.allclose(ours.encode_text(tokens), ref.encode_text(tokens), atol=1e-5)
    assert ours.encode_image(pixels).shape == (2, 512)


def test_preprocessing_equals_reference_on_real_images():
    """Reference: transformers' CLIPImageProcessor (PIL backend) with OpenAI's settings; it crops at
    ``(h - 224) // 2`` while torchvision (OpenAI's pipeline) uses ``round((h - 224) / 2)``, so for rocket, where
    the two differ, the crop offset is checked against torchvision's rule on the reference's resized image."""
    from transformers import CLIPImageProcessor

    kw = dict(do_resize=True, size={"shortest_edge": 224}, resample=3, do_normalize=True,
              image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
              do_convert_rgb=True)
    cropping = CLIPImageProcessor(do_center_crop=True, crop_size={"height": 224, "width": 224}, **kw)
    resizing = CLIPImageProcessor(do_center_crop=False, **kw)
    for name in IMAGES:
        im = Image.fromarray(getattr(skimage.data, name)())
        ours = preprocess_image(im).numpy()
        assert ours.shape == (3, 224, 224)
        if name != "rocket":
            theirs = cropping(images=im, return_tensors="np")["pixel_values"][0]
        else:
            full = resizing(images=im, return_tensors="np")["pixel_values"][0]  # (3, 224, 335)
            left = int(round((full.shape[2] - 224) / 2.0))
            assert left == 56  # round-half-even of 55.5: torchvision's offset
            theirs = full[:, :, left:left + 224]
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
