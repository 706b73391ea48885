"""Recipes: one parser that reads a YAML recipe, applies ``--set`` overrides and checks every section.

Sections: ``task`` (a module of ``xmodal.tasks`` or a dotted path to a user's module exposing
``build(cfg) -> TaskBundle``), ``data``, ``model``, ``train`` (:class:`~xmodal.train.config.TrainConfig`) and
``eval`` (:class:`EvalConfig`). Anything else at the top level is an error. A task module may expose
``check(cfg)`` to validate its own ``data:`` and ``model:`` sections at parse time (before any data is built);
tasks on the generic pipeline do. Because every section is checked after the overrides, a ``--set`` key that
matches nothing in the schema is an error naming it.
"""

from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from xmodal.config.loaders import load_yaml, read_utf8
from xmodal.config.schema import parse_section
from xmodal.errors import ConfigError

SECTIONS = ("task", "data", "model", "train", "eval")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_DOTTED_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")


@dataclass
class EvalConfig:
    """The ``eval:`` section: how the task's evaluation runs during and after training."""

    primary: str | None = None  # the metric that picks the best checkpoint; null: the task's own
    batch_size: int = 256  # samples per forward pass in evaluation


def parse_eval_config(section: Any) -> EvalConfig:
    cfg = parse_section(EvalConfig, section, "eval")
    if cfg.batch_size < 1:
        raise ConfigError(f"eval.batch_size: must be >= 1, got {cfg.batch_size}")
    return cfg


def resolve_task(name: Any) -> ModuleType:
    """The task module named by a recipe's ``task:``; ConfigError unless it is a task (has ``build``)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"task: expected the name of a module of xmodal.tasks (e.g. 'trimodal_retrieval') or "
                          f"a dotted path to your own module, got {name!r}")
    if _TASK_NAME.match(name):
        module_name = f"xmodal.tasks.{name}"
    elif _DOTTED_MODULE.match(name):
        module_name = name
    else:
        raise ConfigError(f"task: {name!r} is neither a task name (lower-case letters, digits, _) nor a dotted "
                          "module path (my_pkg.my_task)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = "in xmodal.tasks" if module_name.startswith("xmodal.tasks.") else "importable"
            raise ConfigError(f"task: no task named {name!r} {where} ({exc})") from exc
        raise
    build = getattr(module, "build", None)
    if not callable(build):
        raise ConfigError(f"task: {name!r} ({module_name}) is not a task: it has no build(cfg) -> TaskBundle")
    return module


def check_recipe(cfg: Any, source: str | Path = "recipe") -> dict[str, Any]:
    """Check every section of a recipe mapping; returns it unchanged. Errors name the key."""
    from xmodal.train.config import parse_train_config

    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(cfg).__name__}")
    for key in cfg:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown recipe section; sections are {', '.join(SECTIONS)}")
    module = resolve_task(cfg.get("task"))
    parse_train_config(cfg.get("train"))
    parse_eval_config(cfg.get("eval"))
    for section in ("data", "model"):
        if section in cfg and cfg[section] is not None and not isinstance(cfg[section], dict):
            raise ConfigError(f"{section}: expected a mapping of settings, got {cfg[section]!r}")
    check = getattr(module, "check", None)
    if callable(check):
        check(cfg)
    return cfg


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with each ``dotted.key=value`` set (values parsed as YAML: ``1e-3``, ``true``,
    ``[1, 2]``); missing intermediate sections are created, and the result is checked by :func:`check_recipe`
    in :func:`load_recipe`."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. train.lr=3e-4")
        if key.split(".")[0] not in SECTIONS:
            raise ConfigError(f"--set {key}: no recipe section {key.split('.')[0]!r}; sections are "
                              f"{', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from exc
        node = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {key}: {where} is a value ({child!r}), not a section")
            node = child
        node[parts[-1]] = value
    return cfg


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML recipe file, unchecked (UTF-8, duplicate keys refused)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    cfg = load_yaml(read_utf8(path), path)
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"recipe {path}: the top level must be a mapping of sections, got {type(cfg).__name__}")
    return cfg


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), check: bool = True) -> dict[str, Any]:
    """Read a YAML recipe, apply ``--set`` overrides and check every section (``check=False`` skips that)."""
    cfg = apply_overrides(read_recipe(path), overrides)
    if check:
        try:
            check_recipe(cfg, path)
        except ConfigError as exc:
            if overrides:
                raise ConfigError(f"{exc} (recipe {path} with --set {' '.join(overrides)})") from exc
            raise ConfigError(f"{exc} (recipe {path})") from exc
    return cfg
