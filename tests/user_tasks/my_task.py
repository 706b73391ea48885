"""A user's task outside xmodal, named in a recipe by its dotted module path (tests of the recipe parser)."""

from __future__ import annotations

from typing import Any

from xmodal.tasks import synthetic_pairs
from xmodal.tasks.base import TaskBundle

BUILT: list[dict[str, Any]] = []


def build(cfg: dict[str, Any]) -> TaskBundle:
    BUILT.append(cfg)
    return synthetic_pairs.build({**cfg, "data": {"n_train": 64, "n_val": 16}, "model": {"hidden": 8, "embed_dim": 4}})
