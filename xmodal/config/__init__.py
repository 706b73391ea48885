"""One configuration parser for every recipe section: strict YAML/JSON readers, typed section schemas."""

from xmodal.config.recipe import (
    SECTIONS,
    EvalConfig,
    apply_overrides,
    check_recipe,
    load_recipe,
    parse_eval_config,
    resolve_task,
)
from xmodal.config.schema import check_value, parse_section

__all__ = [
    "SECTIONS",
    "EvalConfig",
    "apply_overrides",
    "check_recipe",
    "check_value",
    "load_recipe",
    "parse_eval_config",
    "parse_section",
    "resolve_task",
]
