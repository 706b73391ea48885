"""Tasks: each module ``xmodal.tasks.<name>`` (or a user's module named by its dotted path) has
``build(cfg: dict) -> TaskBundle`` (see ``base``) and optionally ``check(cfg)`` for parse-time validation.
``pipeline`` holds the parts every task composes; ``multimodal`` is the generic task a recipe alone configures."""

from xmodal.tasks.base import TaskBundle, build_task

__all__ = ["TaskBundle", "build_task"]
