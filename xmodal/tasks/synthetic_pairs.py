"""A synthetic contrastive task that runs the whole training path in seconds (open_clip's synthetic-data mode).

Two "modalities" ``a`` and ``b`` observe the same latent ``z ~ N(0, I)`` through fixed random projections and
different non-linearities, plus independent noise: ``a = tanh(P_a z) + e_a``, ``b = sin(P_b z) + e_b``. Tiny MLP
encoders map each into a shared space trained with symmetric InfoNCE; retrieval on held-out latents measures how
well the pairs were aligned. Everything is a deterministic function of ``data.seed``.

Recipe sections (all optional): ``data: {n_train, n_val, latent_dim, dim_a, dim_b, noise, seed}`` and
``model: {hidden, layers, embed_dim, dropout}``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.errors import ConfigError
from xmodal.tasks.base import TaskBundle


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


def _section(cls: type, cfg: dict[str, Any], name: str):
    section = cfg.get(name) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{name}: expected a mapping, got {section!r}")
    known = {f.name: f for f in fields(cls)}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown setting; known settings are {', '.join(known)}")
        expected = float if known[key].type == "float" else int
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (expected is int and not isinstance(value, int)):
            raise ConfigError(f"{name}.{key}: expected {expected.__name__}, got {value!r}")
    return cls(**section)


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


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "a": torch.stack([s["a"] for s in samples]),  # (batch, dim_a)
        "b": torch.stack([s["b"] for s in samples]),  # (batch, dim_b)
        "id": [s["id"] for s in samples],
    }


class MLPEncoder(nn.Module):
    """``layers`` x (Linear, GELU, Dropout); ``out_dim`` tells ContrastiveModel the feature size."""

    def __init__(self, in_dim: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.GELU(), nn.Dropout(dropout)]
        self.net = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (batch, hidden)


def build_data(cfg: dict[str, Any]) -> tuple[PairDataset, PairDataset]:
    d = _section(DataConfig, cfg, "data")
    for key in ("n_train", "n_val", "latent_dim", "dim_a", "dim_b"):
        if getattr(d, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(d, key)}")
    gen = torch.Generator().manual_seed(d.seed)
    proj_a = torch.randn(d.latent_dim, d.dim_a, generator=gen)
    proj_b = torch.randn(d.latent_dim, d.dim_b, generator=gen)
    if d.augment < 0:
        raise ConfigError(f"data.augment: must be >= 0, got {d.augment}")
    train = PairDataset(d.n_train, d, proj_a, proj_b, gen, augment=d.augment)
    return train, PairDataset(d.n_val, d, proj_a, proj_b, gen)


def build_model(cfg: dict[str, Any]) -> nn.Module:
    from xmodal.nn.multimodal import ContrastiveModel

    d = _section(DataConfig, cfg, "data")
    m = _section(ModelConfig, cfg, "model")
    if m.layers < 1 or m.hidden < 1 or m.embed_dim < 1:
        raise ConfigError("model.layers / model.hidden / model.embed_dim: must be >= 1")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {m.dropout}")
    encoders = {
        "a": MLPEncoder(d.dim_a, m.hidden, m.layers, m.dropout),
        "b": MLPEncoder(d.dim_b, m.hidden, m.layers, m.dropout),
    }
    return ContrastiveModel(encoders, embed_dim=m.embed_dim)


def loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """Symmetric InfoNCE between ``a`` and ``b`` with the model's learnable logit scale, gathered across ranks."""
    from xmodal.nn.objectives import info_nce

    return info_nce(outputs["a_emb"], outputs["b_emb"], outputs["logit_scale"])


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Retrieval a->b and b->a on ``dataset`` (R@1/5/10 in percent, MedR, MeanR; CLIP4Clip definitions)."""
    from xmodal.metrics.retrieval import retrieval_metrics

    device = next(model.parameters()).device
    emb_a, emb_b = [], []
    for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])  # type: ignore[arg-type]
        out = model({"a": batch["a"].to(device), "b": batch["b"].to(device)})
        emb_a.append(out["a_emb"].float().cpu())
        emb_b.append(out["b_emb"].float().cpu())
    sim = torch.cat(emb_a) @ torch.cat(emb_b).T  # (n, n), unit-norm embeddings: cosine
    metrics = {f"a2b/{k}": v for k, v in retrieval_metrics(sim).items()}
    metrics.update({f"b2a/{k}": v for k, v in retrieval_metrics(sim.T).items()})
    return metrics


def build(cfg: dict[str, Any]) -> TaskBundle:
    """The TaskBundle of the recipe ``cfg`` (sections ``data`` and ``model``)."""
    train_set, val_set = build_data(cfg)
    return TaskBundle(
        model=build_model(cfg),
        loss=loss,
        train_set=train_set,
        collate=collate,
        val_set=val_set,
        evaluate=evaluate,
        coupled_loss=True,
    )
