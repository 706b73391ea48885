"""AdamW parameter groups: no weight decay on parameters with < 2 dims and on the logit scale (open_clip's rule)."""

from __future__ import annotations

import torch
from torch import nn

from xmodal.nn.encoders.cnn import CNN1d
from xmodal.nn.multimodal import ContrastiveModel
from xmodal.tasks import trimodal_retrieval
from xmodal.train.optim import build_adamw, param_groups


class _BoxedScale(nn.Module):
    """A logit scale stored as a (1, 1) matrix: only its name tells it apart from a weight."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.ones(1, 1))


def test_groups_of_the_demo_model() -> None:
    model = trimodal_retrieval.build_model({"model": {"embed_dim": 16, "image_channels": [8, 16],
                                                      "audio_channels": [8, 16], "text_hidden": 16}})
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["decay"]["params"]}
    kept = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert "logit_scale.log_scale" in kept
    assert all(".bias" not in n for n in decayed) and any(".bias" in n for n in kept)
    # norm gains (LayerNorm weight of the text tower, channel LayerNorm of the audio tower) are 1-D: no decay
    assert "encoders.text.net.0.weight" in kept and "encoders.audio.encoder.stages.0.layers.1.norm.weight" in kept
    assert "encoders.image.encoder.stages.0.layers.0.weight" in decayed  # a conv kernel
    assert "projections.image.weight" in decayed
    assert decayed | kept == set(names.values()) and not decayed & kept


def test_one_step_with_zero_gradients_shrinks_only_matrices() -> None:
    """Hand-worked AdamW: with a zero gradient the Adam update is 0, so a decayed parameter becomes
    ``p * (1 - lr * wd)`` and an undecayed one stays exactly as it was."""
    torch.manual_seed(0)
    model = ContrastiveModel({"a": CNN1d(4, (8,), out_dim=6, norm="layer")}, 5)
    model.add_module("boxed", _BoxedScale())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, wd = 0.1, 0.5
    opt = build_adamw(model, lr, (0.9, 0.999), wd)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        if p.ndim >= 2 and "logit_scale" not in name:
            assert torch.allclose(p, before[name] * (1 - lr * wd), rtol=0, atol=1e-7), name
        else:
            assert torch.equal(p, before[name]), name
    assert torch.equal(model.boxed.logit_scale, before["boxed.logit_scale"])


def test_frozen_parameters_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[0].requires_grad_(False)
    params = [p for g in param_groups(model, 0.1) for p in g["params"]]
    assert len(params) == 2 and all(p.requires_grad for p in params)
