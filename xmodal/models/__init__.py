"""Models from modality specs and plans: registries of encoders, fusions, heads and losses looked up by name
(or a dotted path to user code), :func:`build_encoder` from a spec, :func:`build_model` from a recipe's
``model:`` section."""

from collections.abc import Callable
from typing import Any

from xmodal.models import parts as _parts  # noqa: F401  (registers fusions, heads, losses)
from xmodal.models.build import build_model, check_plan
from xmodal.models.encoders import build_encoder
from xmodal.models.registry import (
    ENCODERS,
    FUSIONS,
    HEADS,
    LOSSES,
    import_object,
    register_encoder,
    register_fusion,
    register_head,
    register_loss,
)


def build_loss(name: str, key: str = "loss", **settings: object) -> Callable[..., Any]:
    """The loss ``(outputs, batch) -> scalar`` registered as ``name`` (or at a dotted path), with its settings
    checked; ``coupled`` on the returned callable says whether it couples the samples of a batch."""
    from xmodal.models.build import _part_settings

    factory, checked = _part_settings(LOSSES, name, key, dict(settings), skip=0)
    loss = factory(**checked)
    loss.coupled = bool(getattr(factory, "coupled", False))
    return loss


__all__ = [
    "ENCODERS",
    "FUSIONS",
    "HEADS",
    "LOSSES",
    "build_encoder",
    "build_loss",
    "build_model",
    "check_plan",
    "import_object",
    "register_encoder",
    "register_fusion",
    "register_head",
    "register_loss",
]
