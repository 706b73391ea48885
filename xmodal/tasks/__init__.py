"""Tasks: each module ``xmodal.tasks.<name>`` has ``build(cfg: dict) -> TaskBundle`` (see ``base``)."""

from xmodal.tasks.base import TaskBundle, build_task

__all__ = ["TaskBundle", "build_task"]
