"""A synthetic contrastive task that runs the whole training path in seconds (open_clip's synthetic-data mode).

Two "modalities" ``a`` and ``b`` observe the same latent ``z ~ N(0, I)`` through fixed random projections and
different non-linearities, plus independent noise: ``a = tanh(P_a z) + e_a``, ``b = sin(P_b z) + e_b``. Both are
``numeric`` fields (continuous feature vectors); MLP encoders map each into a shared space trained with symmetric
InfoNCE; retrieval on held-out latents measures how well the pairs were aligned. Everything is a deterministic
function of ``data.seed``.

The task is a dataset view on the generic pipeline (:mod:`xmodal.tasks.pipeline`): its model settings become a
``model:`` plan for :func:`xmodal.models.build_model`; loss, evaluation, baselines and predictions are the
pipeline's.

Recipe sections (all optional): ``data: {n_train, n_val, latent_dim, dim_a, dim_b, noise, seed}`` and
``model: {hidden, layers, embed_dim, dropout}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle

FIELDS = {"a": "numeric", "b": "numeric"}
PAIR = "{q}2{g}"  # metric names a2b/R@1, b2a/R@1


@dataclass
class DataConfig:
    n_train: int = 2048
    n_val: int = 256
    latent_dim: int = 16
    dim_a: int = 32
    dim_b: int = 24
    noise: float = 0.1
    seed: int = 0
    augment: float = 0.0  # training only: Gaussian jitter of this std drawn per sample from torch's global RNG


@dataclass
class ModelConfig:
    hidden: int = 64
    layers: int = 2
    embed_dim: int = 32
    dropout: float = 0.1


def _data_config(cfg: dict[str, Any]) -> DataConfig:
    d = parse_section(DataConfig, cfg.get("data"), "data")
    for key in ("n_train", "n_val", "latent_dim", "dim_a", "dim_b"):
        if getattr(d, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(d, key)}")
    return d


def model_plan(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``model:`` plan: an MLP (``layers`` x Linear, GELU, Dropout; no input norm) per field, projected to
    ``embed_dim``."""
    d = _data_config(cfg)
    m = parse_section(ModelConfig, cfg.get("model"), "model")
    for key in ("hidden", "layers", "embed_dim"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key}: must be >= 1, got {getattr(m, key)}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {m.dropout}")
    mlp = {"modality": "numeric", "family": "mlp", "width": m.hidden, "depth": m.layers, "dropout": m.dropout,
           "norm": False}
    return {"encoders": {"a": {**mlp, "in_dim": d.dim_a}, "b": {**mlp, "in_dim": d.dim_b}},
            "embed_dim": m.embed_dim}


def check(cfg: dict[str, Any]) -> None:
    """Check ``data:`` and ``model:`` at parse time."""
    from xmodal.models import check_plan

    check_plan(model_plan(cfg))


class PairDataset(Dataset):
    """``n`` pairs ``{"a": (dim_a,), "b": (dim_b,), "id": int}`` from latents drawn with ``generator``."""

    def __init__(self, n: int, cfg: DataConfig, proj_a: torch.Tensor, proj_b: torch.Tensor, generator: torch.Generator,
                 augment: float = 0.0) -> None:
        self.augment = augment
        z = torch.randn(n, cfg.latent_dim, generator=generator)  # (n, latent)
        scale = cfg.latent_dim**-0.5
        self.a = torch.tanh(z @ proj_a * scale) + cfg.noise * torch.randn(n, cfg.dim_a, generator=generator)
        self.b = torch.sin(z @ proj_b * scale) + cfg.noise * torch.randn(n, cfg.dim_b, generator=generator)

    def __len__(self) -> int:
        return self.a.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        a, b = self.a[index], self.b[index]
        if self.augment:  # the trainer seeds the global RNG per sample (xmodal.train.sampling)
            a = a + self.augment * torch.randn(a.shape)
            b = b + self.augment * torch.randn(b.shape)
        return {"a": a, "b": b, "id": index}


collate = pipeline.make_collate(FIELDS)  # {"a": (batch, dim_a), "b": (batch, dim_b), "id": (batch,)}


def build_data(cfg: dict[str, Any]) -> tuple[PairDataset, PairDataset]:
    d = _data_config(cfg)
    gen = torch.Generator().manual_seed(d.seed)
    proj_a = torch.randn(d.latent_dim, d.dim_a, generator=gen)
    proj_b = torch.randn(d.latent_dim, d.dim_b, generator=gen)
    if d.augment < 0:
        raise ConfigError(f"data.augment: must be >= 0, got {d.augment}")
    train = PairDataset(d.n_train, d, proj_a, proj_b, gen, augment=d.augment)
    return train, PairDataset(d.n_val, d, proj_a, proj_b, gen)


def build_model(cfg: dict[str, Any]) -> nn.Module:
    from xmodal.models import build_model as build_from_plan

    return build_from_plan(model_plan(cfg))


def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """Symmetric InfoNCE between ``a`` and ``b`` with the model's learnable logit scale, gathered across ranks."""
    from xmodal.models import build_loss

    return build_loss("info_nce")(outputs, batch)


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Retrieval a->b and b->a on ``dataset`` (R@1/5/10 in percent, MedR, MeanR; CLIP4Clip definitions)."""
    return pipeline.retrieval_evaluate(model, dataset, collate=collate, modalities=list(FIELDS), pair=PAIR,
                                       batch_size=batch_size)


def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    train_set, val_set = build_data(cfg)
    return pipeline.assemble(kind="contrastive", model=build_model(cfg), modalities=FIELDS, train_set=train_set,
                             val_set=val_set, collate=collate, pair=PAIR,
                             batch_size=pipeline.eval_batch_size(cfg))
