"""Classifier-free guidance (Ho & Salimans) as an adapter around any conditional denoiser.

The wrapped model is called ``model(x, t, cond=..., **kw)``. In training the adapter replaces each example's
condition by a learnable null condition with probability ``p_uncond``; at sampling, :meth:`guided` returns a
model for the samplers whose output is ``uncond + scale * (cond - uncond)``, both halves from one batched call.
Conditions are either float embeddings ``(batch, *cond_shape)``, whose null is an ``nn.Parameter`` of
``cond_shape``, or integer labels ``(batch,)``, whose null is the extra label ``num_classes`` (the wrapped model
embeds ``num_classes + 1`` labels, so the null embedding is learnt like the others).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xmodal.errors import ConfigError, ShapeError


class ClassifierFreeGuidance(nn.Module):
    """Condition dropout in training, guided prediction at sampling.

    Args:
        model: ``model(x, t, cond=cond, **kw) -> output``.
        cond_shape: shape of one float condition (learnable null), or ``None`` with ``num_classes`` set.
        num_classes: for integer labels; the null label is ``num_classes``.
        p_uncond: probability of dropping an example's condition in training.
        guided_channels: guide only the first channels of the output (e.g. the mean of a learned-variance
            model, whose variance half is taken from the conditional branch, as GLIDE does); ``None``: all.
    """

    def __init__(
        self,
        model: nn.Module,
        cond_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        p_uncond: float = 0.1,
        guided_channels: int | None = None,
    ) -> None:
        super().__init__()
        if (cond_shape is None) == (num_classes is None):
            raise ConfigError("give exactly one of cond_shape (float conditions) or num_classes (labels)")
        if not 0.0 <= p_uncond <= 1.0:
            raise ConfigError(f"p_uncond={p_uncond} must lie in [0, 1]")
        self.model = model
        self.p_uncond = p_uncond
        self.num_classes = num_classes
        self.guided_channels = guided_channels
        self.null_cond = nn.Parameter(torch.zeros(*cond_shape)) if cond_shape is not None else None

    def null_like(self, cond: torch.Tensor) -> torch.Tensor:
        """The null condition for every example of ``cond``."""
        if self.num_classes is not None:  # labels: the extra class num_classes is the null one
            return torch.full_like(cond, self.num_classes)
        assert self.null_cond is not None  # the constructor takes exactly one of cond_shape, num_classes
        if cond.shape[1:] != self.null_cond.shape:
            raise ShapeError(f"condition {tuple(cond.shape)} does not end in {tuple(self.null_cond.shape)}",
                             source="cond")
        return self.null_cond.to(cond.dtype).expand_as(cond)

    def drop(self, cond: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``cond`` with each example replaced by the null condition with probability ``p_uncond``."""
        keep = torch.rand(cond.shape[0], generator=generator, device=cond.device) >= self.p_uncond
        keep = keep.reshape(-1, *([1] * (cond.ndim - 1)))
        return torch.where(keep, cond, self.null_like(cond))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kwargs) -> torch.Tensor:
        """Training: the model on ``cond`` after condition dropout (none in eval mode)."""
        return self.model(x, t, cond=self.drop(cond) if self.training else cond, **kwargs)

    def guided_output(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, scale: float, **kwargs
    ) -> torch.Tensor:
        """``uncond + scale * (cond - uncond)`` from one call on the doubled batch; ``scale = 1`` is the
        conditional model, ``0`` the unconditional."""
        both = self.model(
            torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([cond, self.null_like(cond)]), **kwargs
        )
        cond_out, uncond_out = both.chunk(2)
        c = self.guided_channels if self.guided_channels is not None else cond_out.shape[1]
        guided = uncond_out[:, :c] + scale * (cond_out[:, :c] - uncond_out[:, :c])
        return torch.cat([guided, cond_out[:, c:]], dim=1)

    def guided(self, scale: float) -> _Guided:
        """A model ``(x, t, cond=...) -> guided output`` for the samplers."""
        return _Guided(self, scale)


class _Guided(nn.Module):
    def __init__(self, cfg: ClassifierFreeGuidance, scale: float) -> None:
        super().__init__()
        self.cfg = cfg
        self.scale = scale

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.cfg.guided_output(x, t, cond, self.scale, **kwargs)
