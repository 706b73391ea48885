"""``build_model(plan)``: a whole model from the plain dict of a recipe's ``model:`` section.

    {encoders: {image: default, waveform: {family: ssm, width: 128}},
     fusion: {kind: cross_attention}, head: {kind: classifier, classes: 10}}

builds a :class:`~xmodal.nn.multimodal.LateFusionModel` (outputs ``{"logits" | "prediction", "embedding"}``).
Fusions (``model.fusion.kind``): ``concat`` (default), ``gated``, ``low_rank`` and ``attention_pooled`` fuse the
encoders' pooled vectors; ``cross_attention`` fuses their tokens (every modality's tokens attend to the others';
:mod:`xmodal.nn.tokens`), so every encoder must give tokens, which all built-in families do.
A plan without ``head`` (and without ``fusion``) is contrastive: a
:class:`~xmodal.nn.multimodal.ContrastiveModel` projecting every encoder to a shared ``embed_dim`` space.

Encoder entries are keyed by modality name (or alias), or by a field name with ``modality:`` inside. An entry is
``default`` (or null), a family name, a dotted path to a user's encoder, or a mapping of settings for
:func:`~xmodal.models.encoders.build_encoder`. :func:`check_plan` validates the whole plan without building
anything, so a bad value fails at parse time and names its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from xmodal.config.schema import check_value
from xmodal.errors import ConfigError
from xmodal.modalities import ModalitySpec, UnknownModalityError, get_modality
from xmodal.models.encoders import _factory_schema, build_encoder, check_settings, required_settings
from xmodal.models.registry import ENCODERS, FUSIONS, HEADS

PLAN_KEYS = ("encoders", "fusion", "head", "embed_dim", "init_temperature")


def _encoder_entry(name: str, entry: Any) -> tuple[ModalitySpec, dict[str, Any]]:
    """The spec and settings of one ``model.encoders.<name>`` entry."""
    key = f"model.encoders.{name}"
    if entry is None or entry == "default":
        settings: dict[str, Any] = {}
    elif isinstance(entry, str):
        settings = {"family": entry}
    elif isinstance(entry, Mapping):
        settings = dict(entry)
    else:
        raise ConfigError(f"{key}: expected 'default', a family name, a dotted path or a mapping of settings, "
                          f"got {entry!r}")
    modality = settings.pop("modality", name)
    try:
        spec = get_modality(check_value(f"{key}.modality", modality, str))
    except UnknownModalityError as exc:
        raise ConfigError(f"{key}: {exc} (name a modality, or set {key}.modality)") from None
    return spec, settings


def _kind(section: Mapping[str, Any], key: str, default: str | None) -> tuple[str, dict[str, Any]]:
    if isinstance(section, str):
        return section, {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{key}: expected a mapping with 'kind', got {section!r}")
    settings = dict(section)
    kind = settings.pop("kind", default)
    if kind is None:
        raise ConfigError(f"{key}.kind: missing; known: {', '.join(HEADS.names())}")
    return check_value(f"{key}.kind", kind, str), settings


def _part_settings(registry: Any, kind: str, key: str, settings: dict[str, Any],
                   skip: int = 1) -> tuple[Any, dict[str, Any]]:
    factory = registry.get(kind, f"{key}.kind")
    checked = check_settings(key, settings, _factory_schema(factory, skip))
    for name in required_settings(factory, skip):
        if name not in checked:
            raise ConfigError(f"{key}.{name}: required by {key}.kind {kind!r}")
    return factory, checked


def check_plan(plan: Any) -> dict[str, Any]:
    """Validate a ``model:`` plan (keys, families, settings, fusion, head) without building modules."""
    if not isinstance(plan, Mapping):
        raise ConfigError(f"model: expected a mapping with 'encoders', got {plan!r}")
    for key in plan:
        if key not in PLAN_KEYS:
            raise ConfigError(f"model.{key}: unknown setting; known settings are {', '.join(PLAN_KEYS)}")
    encoders = plan.get("encoders")
    if not isinstance(encoders, Mapping) or not encoders:
        raise ConfigError(f"model.encoders: expected a mapping of at least one modality, got {encoders!r}")
    for name, entry in encoders.items():
        spec, settings = _encoder_entry(str(name), entry)
        family = settings.pop("family", None) or spec.default_encoder
        factory = ENCODERS.get(check_value(f"model.encoders.{name}.family", family, str),
                               f"model.encoders.{name}.family")
        check_settings(f"model.encoders.{name}", settings, _factory_schema(factory))
    if "head" in plan:
        kind, settings = _kind(plan.get("fusion") or {}, "model.fusion", "concat")
        _part_settings(FUSIONS, kind, "model.fusion", settings)
        kind, settings = _kind(plan["head"], "model.head", None)
        _part_settings(HEADS, kind, "model.head", settings)
    elif "fusion" in plan:
        raise ConfigError("model.fusion: a fused model needs model.head; a contrastive plan has neither")
    for key, tp in (("embed_dim", int), ("init_temperature", float)):
        if key in plan and check_value(f"model.{key}", plan[key], tp) <= 0:
            raise ConfigError(f"model.{key}: must be > 0, got {plan[key]}")
    return dict(plan)


def build_model(plan: Mapping[str, Any]) -> nn.Module:
    """The model of a ``model:`` plan (see the module docstring); ConfigError names the key at fault."""
    from xmodal.nn.multimodal import ContrastiveModel, LateFusionModel

    plan = check_plan(plan)
    encoders: dict[str, nn.Module] = {}
    for name, entry in plan["encoders"].items():
        spec, settings = _encoder_entry(str(name), entry)
        encoders[str(name)] = build_encoder(spec, key=f"model.encoders.{name}", **settings)
    if "head" not in plan:
        return ContrastiveModel(encoders, int(plan.get("embed_dim", 256)),
                                init_temperature=float(plan.get("init_temperature", 0.07)))
    in_dims = {name: enc.out_dim for name, enc in encoders.items()}
    kind, settings = _kind(plan.get("fusion") or {}, "model.fusion", "concat")
    factory, settings = _part_settings(FUSIONS, kind, "model.fusion", settings)
    fusion = factory(in_dims, **settings)
    if getattr(fusion, "needs_tokens", False):
        from xmodal.nn.tokens import gives_tokens

        for name, enc in encoders.items():
            if not gives_tokens(enc):
                raise ConfigError(f"model.encoders.{name}: fusion {kind!r} attends to every modality's tokens, but "
                                  f"this encoder ({type(enc).__name__}) gives only a pooled vector (its forward "
                                  "takes no return_tokens); use fusion attention_pooled or concat, or an encoder "
                                  "that gives tokens")
    kind, settings = _kind(plan["head"], "model.head", None)
    factory, settings = _part_settings(HEADS, kind, "model.head", settings)
    head = factory(int(fusion.out_dim), **settings)
    return LateFusionModel(encoders, fusion, head)
