"""A user's task whose ``build(cfg)`` takes no saved artifacts: the multimodal task, rebuilt from the data."""

from __future__ import annotations

from typing import Any

from xmodal.tasks import multimodal
from xmodal.tasks.base import TaskBundle


def build(cfg: dict[str, Any]) -> TaskBundle:
    return multimodal.build(cfg)
