"""Building blocks, plain ``nn.Module`` s composed by injection: ``encoders`` by modality, ``fusion``,
``heads``, ``objectives``, and the compositions in ``multimodal`` (``LateFusionModel``, ``ContrastiveModel``);
``tokens``: the token sequences encoders give token-level fusions beside their pooled vectors.

Masks everywhere are bool ``(batch, time)`` with True = valid (as ``xmodal.data.sample.collate`` makes them).
"""

from xmodal.nn.multimodal import ContrastiveModel, LateFusionModel, contrastive_loss
from xmodal.nn.objectives import LogitScale, info_nce, pairwise_info_nce, vatt_loss

__all__ = [
    "ContrastiveModel",
    "LateFusionModel",
    "LogitScale",
    "contrastive_loss",
    "info_nce",
    "pairwise_info_nce",
    "vatt_loss",
]
