"""Model compositions: encoders by modality, then fusion and a head (late fusion), or projections into one
embedding space (contrastive alignment).

Batch convention (the same as ``xmodal.data.sample.collate``): a dict with one tensor per modality,
``batch["audio"]``, and, for variable-length modalities, ``batch["audio_mask"]`` (bool ``(batch, time)``,
True = valid). An encoder receives ``mask=`` only when the batch holds one for its modality.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xmodal.errors import ConfigError, MissingModalityError
from xmodal.nn.objectives import LogitScale, pairwise_info_nce


def encode(encoder: nn.Module, batch: Mapping[str, Any], modality: str, return_tokens: bool = False) -> Any:
    """Run ``encoder`` on ``batch[modality]``, passing ``batch[modality + '_mask']`` as ``mask=`` when present;
    ``return_tokens`` asks for the pooled vector and the tokens (:mod:`xmodal.nn.tokens`)."""
    if modality not in batch:
        raise MissingModalityError(
            f"the batch has no {modality!r}; it holds {sorted(batch)}", source=modality
        )
    kwargs: dict[str, Any] = {"return_tokens": True} if return_tokens else {}
    mask = batch.get(f"{modality}_mask")
    if mask is not None:
        kwargs["mask"] = mask
    return encoder(batch[modality], **kwargs)


class LateFusionModel(nn.Module):
    """Encoders keyed by modality, then ``fusion({modality: embedding}) -> fused``, then ``head(fused)``
    (TorchMultimodal's ``LateFusion``). Every encoder's modality must be in the batch.

    ``forward`` returns a dict (the task contract): the head's output under the head's ``output_key``
    (default ``"logits"``) and the fused vector under ``"embedding"``. A fusion with ``needs_tokens = True``
    receives every encoder's tokens (``return_tokens=True``, :mod:`xmodal.nn.tokens`) instead of its pooled
    vector; the call still goes through each encoder's ``forward`` (so wrappers' hooks, FSDP's, run)."""

    def __init__(self, encoders: Mapping[str, nn.Module], fusion: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.fusion = fusion
        self.head = head

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        tokens = bool(getattr(self.fusion, "needs_tokens", False))
        embeddings = {name: encode(encoder, batch, name, tokens) for name, encoder in self.encoders.items()}
        fused = self.fusion(embeddings)
        return {getattr(self.head, "output_key", "logits"): self.head(fused), "embedding": fused}


class ContrastiveModel(nn.Module):
    """CLIP/VATT/ImageBind-style alignment: each modality's encoder, a projection to ``embed_dim``, L2 norm.

    Args:
        encoders: ``{modality: encoder}``; an encoder maps ``batch[modality]`` (and ``mask=``) to ``(batch, d)``.
        embed_dim: size of the shared embedding space.
        projections: per modality, either a module mapping ``d -> embed_dim`` or the int ``d`` (a bias-free
            Linear is built, as in CLIP). Modalities left out get ``Linear(encoder.out_dim, embed_dim)`` when
            the encoder has an ``out_dim`` attribute (all xmodal encoders do), else an error.
        init_temperature: initial temperature of the learnable logit scale (CLIP: 0.07, clamped at scale 100).

    ``forward(batch)`` encodes the modalities present in ``batch`` and returns
    ``{"<modality>_emb": (batch, embed_dim)}`` (unit norm) plus ``"logit_scale"`` (0-d tensor).
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        embed_dim: int,
        projections: Mapping[str, nn.Module | int] | None = None,
        init_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.embed_dim = embed_dim
        projections = dict(projections or {})
        heads: dict[str, nn.Module] = {}
        for name, encoder in self.encoders.items():
            spec = projections.pop(name, getattr(encoder, "out_dim", None))
            if isinstance(spec, nn.Module):
                heads[name] = spec
            elif isinstance(spec, int):
                heads[name] = nn.Linear(spec, embed_dim, bias=False)
            else:
                raise ConfigError(
                    f"projections[{name!r}]: give a module or the encoder's output size (int); the "
                    f"encoder has no out_dim attribute to infer it from"
                )
        if projections:
            raise ConfigError(f"projections for modalities without an encoder: {sorted(projections)}")
        self.projections = nn.ModuleDict(heads)
        self.logit_scale = LogitScale(init_temperature)

    @property
    def modalities(self) -> list[str]:
        return list(self.encoders)

    def embed(self, batch: Mapping[str, Any], modality: str) -> torch.Tensor:
        """Unit-norm embedding ``(batch, embed_dim)`` of one modality."""
        z = self.projections[modality](encode(self.encoders[modality], batch, modality))
        return F.normalize(z, dim=-1)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        present = [m for m in self.encoders if m in batch]
        if not present:
            raise MissingModalityError(
                f"the batch holds none of the model's modalities {self.modalities}; "
                f"its keys are {sorted(batch)}",
                source="batch",
            )
        out = {f"{m}_emb": self.embed(batch, m) for m in present}
        out["logit_scale"] = self.logit_scale()
        return out


def contrastive_loss(
    outputs: Mapping[str, torch.Tensor], gather: bool = True, check_finite: bool = False
) -> torch.Tensor:
    """Mean symmetric InfoNCE over every pair of ``*_emb`` in ``ContrastiveModel`` outputs: each modality gathered
    once per step, and no host synchronisation inside (the trainer checks the step's loss for NaN once; pass
    ``check_finite=True`` to check the embeddings here)."""
    embeddings = {k[: -len("_emb")]: v for k, v in outputs.items() if k.endswith("_emb")}
    return pairwise_info_nce(embeddings, outputs["logit_scale"], gather=gather, check_finite=check_finite)
