"""Encoders from modality specs: :func:`build_encoder` returns the encoder that a spec's nature implies.

Every family is a factory ``(spec, **settings) -> nn.Module`` with an ``out_dim`` attribute, registered in
:data:`xmodal.models.registry.ENCODERS`; the keyword annotations of a factory are its recipe schema, so an unknown
key or a value of the wrong type is a ConfigError naming ``<modality>.<key>``. How each spec's axes are laid out
for the family (which axes a convolution slides over, what becomes channels) is decided here, from the spec:

- image ``(3, H, W)`` -> 2-D CNN; spectrogram ``(mels, time)`` and piano roll ``(pitch, time)`` -> 2-D CNN with
  one channel (``family: cnn1d`` reads the mel bins as channels instead); waveform ``(channels, time)`` -> 1-D
  CNN; video ``(time, 3, H, W)`` and optical flow ``(time, 2, H, W)`` -> 3-D CNN over (time, H, W); skeletons
  ``(time, joints, xy|xyz)`` -> 1-D CNN over time with ``joints * coords`` channels; SMPL ``(time, 85)`` -> SSM;
- token ids (vq_tokens, tokenised text) -> token embedding + Transformer; text may instead use the pretrained
  MiniLM tower (``family: minilm``); MIDI notes ``(notes, 5)`` -> note embedding + Transformer;
- point clouds -> PointNet; meshes and graphs -> message passing (GIN); table columns -> MLP (numeric) or
  embedding + MLP (categorical).

Sizes that the spec cannot know (vocabulary size, node feature size, joints) have documented defaults and are
settings; the pipeline fills them from the data.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

from torch import nn

from xmodal.config.schema import check_keywords
from xmodal.errors import ConfigError
from xmodal.modalities import ModalitySpec, get_modality
from xmodal.models.adapters import (
    ConvAdapter,
    GraphAdapter,
    NoteEmbedding,
    SequenceAdapter,
    TabularMLP,
    TextProjection,
)
from xmodal.models.registry import ENCODERS, register_encoder
from xmodal.nn.encoders.cnn import ConvEncoder
from xmodal.nn.encoders.gnn import GNNEncoder
from xmodal.nn.encoders.pointnet import PointNetEncoder
from xmodal.nn.encoders.rnn import RNNEncoder
from xmodal.nn.encoders.ssm import SSMEncoder
from xmodal.nn.encoders.transformer import TransformerEncoder

Norm = Literal["batch", "group", "layer", "none"]
TEXT_VOCAB = 30522  # the MiniLM / BERT-uncased word-piece vocabulary, the tokenizer xmodal uses for text
JOINTS = {"skeleton_2d": 17, "skeleton_3d": 24}  # COCO keypoints; SMPL joints
SMPL_PARAMS = 85  # pose 72 + shape 10 + translation 3


def _stages(width: int | None, channels: list[int] | None, default: tuple[int, ...], key: str) -> list[int]:
    if channels is not None and width is not None:
        raise ConfigError(f"{key}: give either width or channels, not both")
    if channels is not None:
        if not channels:
            raise ConfigError(f"{key}.channels: expected at least one stage width")
        return list(channels)
    if width is None:
        return list(default)
    n = len(default)
    return [max(8, width >> (n - 1 - i)) for i in range(n)]  # halving towards the input, as the defaults do


def _conv_layout(spec: ModalitySpec, dims: int, settings: dict[str, Any]) -> tuple[int, Any, int | None]:
    """``(in_channels, layout, time_dim)`` of ``spec`` for a ``dims``-D convolution."""
    name, in_channels = spec.name, settings.pop("in_channels", None)
    if dims == 2 and spec.axes in (("mels", "time"), ("pitch", "time")):
        return 1, lambda x: x.unsqueeze(1) if x.dim() == 3 else x, 3
    if dims == 2 and spec.axes == ("channels", "height", "width"):
        return in_channels or 3, lambda x: x, None
    if dims == 3 and spec.axes[:2] in (("time", "channels"), ("time", "uv")):
        default = 2 if spec.axes[1] == "uv" else 3
        return in_channels or default, lambda x: x.transpose(1, 2), 2
    if dims == 1 and name in JOINTS:
        joints = settings.pop("joints", None) or JOINTS[name]
        coords = 2 if name == "skeleton_2d" else 3
        return in_channels or joints * coords, lambda x: x.flatten(2).transpose(1, 2), 2
    if dims == 1 and spec.axes == ("channels", "time"):
        return in_channels or 1, lambda x: x.unsqueeze(1) if x.dim() == 2 else x, 2
    if dims == 1 and spec.axes in (("mels", "time"), ("pitch", "time")):
        return in_channels or (64 if name == "spectrogram" else 128), lambda x: x, 2
    raise ConfigError(f"{name}: a {dims}-D convolution does not fit its axes {spec.axes}")


def _conv(dims: int, spec: ModalitySpec, key: str, settings: dict[str, Any], width: int | None,
          channels: list[int] | None, default: tuple[int, ...], **kwargs: Any) -> nn.Module:
    in_ch, layout, time_dim = _conv_layout(spec, dims, settings)
    stages = _stages(width, channels, default, key)
    if kwargs.get("norm") is None:
        # Padded along time: channel LayerNorm never mixes positions, so masks stay exact; GroupNorm otherwise
        # (both keep gradient accumulation exact, which BatchNorm does not).
        kwargs["norm"] = "layer" if time_dim is not None else "group"
    encoder = ConvEncoder(dims, in_ch, stages, **kwargs)
    return ConvAdapter(encoder, layout, time_dim, spec.name)


@register_encoder("cnn1d")
def cnn1d(spec: ModalitySpec, *, width: int | None = None, channels: list[int] | None = None, depth: int = 1,
          kernel_size: int = 5, norm: Norm = "layer", stem_stride: int = 1, in_channels: int | None = None,
          joints: int | None = None, out_dim: int | None = None) -> nn.Module:
    """1-D convolution over time (channel LayerNorm by default: exact under padding and accumulation)."""
    settings = {"in_channels": in_channels, "joints": joints}
    return _conv(1, spec, spec.name, settings, width, channels, (64, 128, 256), depth=depth,
                 kernel_size=kernel_size, norm=norm, stem_stride=stem_stride, out_dim=out_dim)


@register_encoder("cnn2d")
def cnn2d(spec: ModalitySpec, *, width: int | None = None, channels: list[int] | None = None, depth: int = 1,
          kernel_size: int = 3, norm: Norm | None = None, stem_stride: int = 1, in_channels: int | None = None,
          out_dim: int | None = None, channels_last: bool = False) -> nn.Module:
    """2-D convolution over (height, width), or (mels | pitch, time) with one input channel. ``channels_last``
    changes the memory layout only (same values; faster GroupNorm convolutions on CPU)."""
    return _conv(2, spec, spec.name, {"in_channels": in_channels}, width, channels, (32, 64, 128, 256),
                 depth=depth, kernel_size=kernel_size, norm=norm, stem_stride=stem_stride, out_dim=out_dim,
                 channels_last=channels_last)


@register_encoder("cnn3d")
def cnn3d(spec: ModalitySpec, *, width: int | None = None, channels: list[int] | None = None, depth: int = 1,
          kernel_size: int = 3, norm: Norm | None = None, stem_stride: int = 1, in_channels: int | None = None,
          out_dim: int | None = None) -> nn.Module:
    """3-D convolution over (time, height, width) of frames ``(time, channels, H, W)``."""
    return _conv(3, spec, spec.name, {"in_channels": in_channels}, width, channels, (32, 64, 128),
                 depth=depth, kernel_size=kernel_size, norm=norm, stem_stride=stem_stride, out_dim=out_dim)


def _sequence_in_dim(spec: ModalitySpec, in_dim: int | None, joints: int | None) -> int:
    if in_dim is not None:
        return in_dim
    if spec.name in JOINTS:
        return (joints or JOINTS[spec.name]) * (2 if spec.name == "skeleton_2d" else 3)
    if spec.name == "smpl":
        return SMPL_PARAMS
    if spec.axes in (("mels", "time"), ("pitch", "time")):
        raise ConfigError(f"{spec.name}: a sequence encoder reads (time, features); transpose the "
                          f"{spec.axes[0]} axis to the end and give in_dim")
    if spec.name == "numeric":
        return 1
    return 16


def _is_tokens(spec: ModalitySpec) -> bool:
    return spec.is_text or spec.dtype == "int64" and spec.structure == "sequence"


@register_encoder("transformer")
def transformer(spec: ModalitySpec, *, width: int = 128, depth: int = 2, heads: int = 4, mlp_ratio: float = 4.0,
                vocab_size: int | None = None, in_dim: int | None = None, max_len: int = 1024,
                dropout: float = 0.0, out_dim: int | None = None) -> nn.Module:
    """Pre-norm Transformer: token embedding for token ids (text: the word-piece vocabulary; vq_tokens: 1024
    codes unless ``vocab_size`` says), note embedding for MIDI notes, a linear map for feature sequences."""
    kwargs: dict[str, Any] = {"dim": width, "depth": depth, "heads": heads, "mlp_ratio": mlp_ratio,
                              "max_len": max_len, "dropout": dropout, "out_dim": out_dim}
    if width % heads:
        raise ConfigError(f"{spec.name}.heads: {heads} must divide width ({width})")
    if _is_tokens(spec):
        vocab = vocab_size or (TEXT_VOCAB if spec.is_text else 1024)
        return SequenceAdapter(TransformerEncoder(vocab_size=vocab, **kwargs), flatten=False)
    if spec.name == "midi_notes":
        return SequenceAdapter(TransformerEncoder(in_dim=width, **kwargs), front=NoteEmbedding(width))
    return SequenceAdapter(TransformerEncoder(in_dim=_sequence_in_dim(spec, in_dim, None), **kwargs))


@register_encoder("ssm")
def ssm(spec: ModalitySpec, *, width: int = 128, depth: int = 2, d_state: int = 16, expand: int = 2,
        in_dim: int | None = None, joints: int | None = None, out_dim: int | None = None) -> nn.Module:
    """Selective state-space (Mamba-style) stack for long sequences ``(time, features)``."""
    if spec.name == "midi_notes":
        return SequenceAdapter(SSMEncoder(width, width, depth, d_state, expand, out_dim=out_dim),
                               front=NoteEmbedding(width))
    if spec.name == "waveform":
        raise ConfigError(f"{spec.name}.family: a state-space model reads (time, features) frames; use cnn1d "
                          "for raw samples or a spectrogram field")
    dim = _sequence_in_dim(spec, in_dim, joints)
    return SequenceAdapter(SSMEncoder(dim, width, depth, d_state, expand, out_dim=out_dim))


@register_encoder("rnn")
def rnn(spec: ModalitySpec, *, width: int = 128, depth: int = 1, cell: Literal["lstm", "gru"] = "gru",
        in_dim: int | None = None, joints: int | None = None, out_dim: int | None = None) -> nn.Module:
    """Bidirectional LSTM/GRU over ``(time, features)`` (``width`` hidden units per direction)."""
    dim = _sequence_in_dim(spec, in_dim, joints)
    return SequenceAdapter(RNNEncoder(dim, width, num_layers=depth, cell=cell, out_dim=out_dim))


@register_encoder("pointnet")
def pointnet(spec: ModalitySpec, *, width: int = 256, in_dim: int = 3, input_transform: bool = False,
             out_dim: int | None = None) -> nn.Module:
    """PointNet (shared MLP, masked max pool) on ``(points, xyz[+features])``."""
    widths = [max(8, width // 4), max(8, width // 2), width]
    return PointNetEncoder(in_dim, widths, out_dim=out_dim, input_transform=input_transform)


@register_encoder("gnn")
def gnn(spec: ModalitySpec, *, width: int = 64, depth: int = 3, in_dim: int | None = None,
        edge_dim: int | None = None, aggr: Literal["sum", "mean", "max"] = "sum",
        pool: Literal["sum", "mean", "max"] = "mean", out_dim: int | None = None,
        structure: bool = True) -> nn.Module:
    """Message passing (residual GIN layers) over a graph's nodes, or a mesh's vertices joined by face edges;
    ``structure``: node degrees and the graph's size are inputs too (``GNNEncoder``), so graphs whose node
    features say nothing (constant, or coordinates alone) are told apart by their shape."""
    dim = in_dim or (3 if spec.name == "mesh" else 16)
    return GraphAdapter(GNNEncoder(dim, width, depth, out_dim=out_dim, edge_dim=edge_dim, aggr=aggr, pool=pool,
                                   structure=structure), spec.name)


@register_encoder("mlp")
def mlp(spec: ModalitySpec, *, width: int = 64, depth: int = 2, in_dim: int = 1, dropout: float = 0.0,
        norm: bool = True) -> nn.Module:
    """LayerNorm (unless ``norm`` is false) then ``depth`` x (Linear, GELU, Dropout) on continuous values
    ``(features,)``."""
    return TabularMLP(in_dim, width, depth, dropout, None, norm)


@register_encoder("embedding")
def embedding(spec: ModalitySpec, *, num_categories: int = 2, width: int = 64, depth: int = 1,
              dropout: float = 0.0) -> nn.Module:
    """A learned vector per category index, then ``depth`` x (Linear, GELU, Dropout)."""
    return TabularMLP(1, width, depth, dropout, num_categories)


@register_encoder("minilm")
def minilm(spec: ModalitySpec, *, width: int = 512, dropout: float = 0.1, in_dim: int = 384) -> nn.Module:
    """The pretrained MiniLM sentence tower (frozen, offline from its package) and a trainable projection; it
    takes strings, or MiniLM embeddings ``(batch, 384)`` computed once and cached."""
    if not spec.is_text:
        raise ConfigError(f"{spec.name}.family: minilm encodes text, not {spec.family}")
    return TextProjection(in_dim, width, dropout)


def _factory_schema(factory: Any, skip: int = 1) -> dict[str, Any]:
    """``{keyword: type}`` of a factory's settings, its first ``skip`` parameters (the spec, the input sizes)
    excluded."""
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except (NameError, TypeError):  # a user's factory without resolvable hints: accept what its signature names
        hints = {}
    params = inspect.signature(factory).parameters
    return {name: hints.get(name, Any) for name, p in list(params.items())[skip:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def required_settings(factory: Any, skip: int = 1) -> list[str]:
    """Settings of a factory (after its first ``skip`` parameters) that have no default."""
    params = list(inspect.signature(factory).parameters.values())[skip:]
    return [p.name for p in params if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def check_settings(key: str, settings: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Checked settings; integers must be >= 1 (sizes), ``dropout`` must lie in [0, 1)."""
    out = check_keywords(key, settings, schema)
    for name, value in out.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"{key}.{name}: must be >= 1, got {value}")
        if isinstance(value, list) and any(isinstance(v, int) and v < 1 for v in value):
            raise ConfigError(f"{key}.{name}: every entry must be >= 1, got {value}")
        if name == "kernel_size" and value % 2 == 0:
            raise ConfigError(f"{key}.{name}: must be odd so that padding keeps positions aligned, got {value}")
        if name == "dropout" and not 0.0 <= value < 1.0:
            raise ConfigError(f"{key}.{name}: must be in [0, 1), got {value}")
    return out


def build_encoder(modality: str | ModalitySpec, key: str | None = None, **overrides: Any) -> nn.Module:
    """The encoder of ``modality`` (a spec, its name or an alias), by default of the family its nature implies.

    ``overrides`` may switch the family (``family="ssm"`` or a dotted path ``my_pkg.mod:MyEncoder``, called as
    ``MyEncoder(spec, **settings)``) and set the family's settings (``width=128``). ``key`` names the recipe key
    in errors (default: the modality name). Returns an ``nn.Module`` with an ``out_dim`` attribute.
    """
    spec = modality if isinstance(modality, ModalitySpec) else get_modality(modality)
    key = key or spec.name
    settings = dict(overrides)
    family = settings.pop("family", None) or spec.default_encoder
    factory = ENCODERS.get(family, f"{key}.family")
    checked = check_settings(key, settings, _factory_schema(factory))
    for name in required_settings(factory):
        if name not in checked:
            raise ConfigError(f"{key}.{name}: required by family {family!r}")
    encoder = factory(spec, **checked)
    if not isinstance(encoder, nn.Module) or not isinstance(getattr(encoder, "out_dim", None), int):
        raise ConfigError(f"{key}.family: {family!r} must return an nn.Module with an integer out_dim, "
                          f"got {type(encoder).__name__}")
    return encoder
