"""Samples and batching.

A sample is a plain dict: ``{"id": str, <field>: tensor | str | other, ...}``; e.g.
``{"id": "cat-01", "image": (3, H, W) float, "audio": (time,) float, "caption": "a cat"}``. Fields are named
by the dataset; ``required`` maps each field to a modality name of :mod:`xmodal.modalities`.
:func:`collate` stacks fixed-size tensors, pads variable-length ones and adds ``<field>_mask`` (bool, True =
valid) and ``<field>_lengths``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from xmodal.errors import DataError, EmptyInputError, MissingModalityError, NonFiniteError, ShapeError
from xmodal.modalities import UnknownModalityError, get_modality

Sample = dict[str, Any]


def sample_id(sample: Mapping[str, Any]) -> str:
    """The sample's id, or ``"<no id>"`` so error messages still read."""
    return str(sample.get("id", "<no id>"))


def _all_finite(value: torch.Tensor) -> bool:
    # numpy for CPU tensors: single-threaded and ~50x faster than torch's threaded kernel on small tensors,
    # which matters when every item of a dataset is checked on a busy machine.
    if value.device.type == "cpu" and value.dtype in (torch.float32, torch.float64, torch.float16):
        return bool(np.isfinite(value.detach().numpy()).all())
    return bool(torch.isfinite(value).all())


def _check_finite(value: torch.Tensor, sid: str, field: str) -> None:
    if (value.is_floating_point() or value.is_complex()) and not _all_finite(value):
        n = int((~torch.isfinite(value)).sum())
        raise NonFiniteError(f"sample {sid!r}, field {field!r}: {n} of {value.numel()} values are NaN or "
                             "infinite, expected finite numbers", source=f"{sid}/{field}")


def _check_value_finite(value: Any, sid: str, field: str) -> None:
    """NaN/inf in a tensor, an array, a float, or a graph's node and edge features (objects with ``x``)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        _check_finite(torch.as_tensor(value), sid, field)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise NonFiniteError(f"sample {sid!r}, field {field!r}: value is {value}", source=f"{sid}/{field}")
    elif isinstance(getattr(value, "x", None), np.ndarray):  # a Graph (node features, optional edge features)
        for part in ("x", "edge_attr"):
            arr = getattr(value, part, None)
            if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise NonFiniteError(f"sample {sid!r}, field {field!r}: graph {part} holds "
                                     f"{int((~np.isfinite(arr)).sum())} NaN or infinite values",
                                     source=f"{sid}/{field}")


def validate_sample(sample: Mapping[str, Any], required: Mapping[str, str]) -> Mapping[str, Any]:
    """Check that ``sample`` has every field of ``required`` ({field: modality name}) with usable content.

    Raises :class:`MissingModalityError` (field absent or None), :class:`EmptyInputError` (blank text, empty
    tensor), :class:`NonFiniteError` (NaN/inf); each message names the sample id and the field.
    """
    sid = sample_id(sample)
    for field, modality in required.items():
        spec = get_modality(modality)
        if field not in sample or sample[field] is None:
            have = ", ".join(k for k in sample if k != "id") or "nothing"
            raise MissingModalityError(f"sample {sid!r} lacks field {field!r} (modality {spec.name}); it has: "
                                       f"{have}", source=f"{sid}/{field}")
        value = sample[field]
        if spec.is_text:
            if not isinstance(value, str):
                raise DataError(f"sample {sid!r}, field {field!r}: expected text (str), got "
                                f"{type(value).__name__}", source=f"{sid}/{field}")
            if not value.strip():
                raise EmptyInputError(f"sample {sid!r}, field {field!r}: {spec.name} text is empty",
                                      source=f"{sid}/{field}")
        elif isinstance(value, (torch.Tensor, np.ndarray)):
            t = torch.as_tensor(value)
            if t.numel() == 0:
                raise EmptyInputError(f"sample {sid!r}, field {field!r}: {spec.name} tensor of shape "
                                      f"{tuple(t.shape)} is empty", source=f"{sid}/{field}")
            _check_finite(t, sid, field)
        else:
            _check_value_finite(value, sid, field)
    return sample


def _pad_axis(field: str, modalities: Mapping[str, str] | None, shapes: list[tuple[int, ...]]) -> int:
    """Axis to pad: the field's modality length axis counted from the end (so a mono ``(time,)`` waveform
    and a ``(channels, time)`` one both pad their last axis), else the one axis whose size varies."""
    name = (modalities or {}).get(field, field)
    try:
        spec = get_modality(name)
        if spec.length_axis is not None:
            return spec.length_axis - len(spec.axes)
    except UnknownModalityError:
        pass
    differing = [a for a in range(len(shapes[0])) if len({s[a] for s in shapes}) > 1]
    if len(differing) == 1:
        return differing[0] - len(shapes[0])
    if not differing:
        return -len(shapes[0])
    raise ShapeError(f"field {field!r}: sizes vary along axes {differing}; name the axis to pad with "
                     f"pad_modalities={{{field!r}: axis}}", source=field)


def collate(samples: Sequence[Mapping[str, Any]], pad_modalities: Mapping[str, int] | Iterable[str] = (),
            modalities: Mapping[str, str] | None = None, pad_value: float = 0.0) -> dict[str, Any]:
    """Batch samples into one dict.

    - tensors/arrays of equal shape are stacked: ``(batch, ...)``;
    - fields in ``pad_modalities`` (a list, or {field: axis}) are padded with ``pad_value`` along their
      length axis (from ``modalities`` {field: modality} or the field name, else the axis that varies) and
      get ``<field>_mask`` bool ``(batch, max_len)`` (True = valid) and ``<field>_lengths`` int64 ``(batch,)``;
    - strings (ids, captions) stay lists; ints/floats become a tensor; anything else stays a list.

    Raises :class:`NonFiniteError` naming the sample id and field for NaN/inf, :class:`MissingModalityError`
    when a sample lacks a field the first one has, :class:`ShapeError` for unpadded fields of unequal shapes.
    """
    if not samples:
        raise EmptyInputError("collate: no samples")
    axes = dict(pad_modalities) if isinstance(pad_modalities, Mapping) else {f: None for f in pad_modalities}
    fields = list(samples[0].keys())
    for s in samples[1:]:
        for f in fields:
            if f not in s:
                raise MissingModalityError(f"sample {sample_id(s)!r} lacks field {f!r} that sample "
                                           f"{sample_id(samples[0])!r} has", source=f"{sample_id(s)}/{f}")
    ids = [sample_id(s) for s in samples]
    batch: dict[str, Any] = {}
    for f in fields:
        values = [s[f] for s in samples]
        first = values[0]
        if isinstance(first, (torch.Tensor, np.ndarray)):
            tensors = [torch.as_tensor(v) for v in values]
            for sid, t in zip(ids, tensors):
                _check_finite(t, sid, f)
            if f in axes:
                given = axes[f]
                axis = int(given) if given is not None else _pad_axis(f, modalities, [tuple(t.shape) for t in tensors])
                batch[f], batch[f + "_mask"], batch[f + "_lengths"] = _pad(tensors, axis, pad_value, f, ids)
            else:
                shapes = {tuple(t.shape) for t in tensors}
                if len(shapes) > 1:
                    detail = ", ".join(f"{sid}: {tuple(t.shape)}" for sid, t in zip(ids, tensors))
                    raise ShapeError(f"field {f!r} has unequal shapes ({detail}); add it to pad_modalities or "
                                     "resize it", source=f)
                batch[f] = torch.stack(tensors)
        elif isinstance(first, bool) or not isinstance(first, (int, float)):
            for sid, v in zip(ids, values):
                _check_value_finite(v, sid, f)  # graphs (node features), floats in a list
            batch[f] = list(values)
        else:
            for sid, v in zip(ids, values):
                _check_value_finite(v, sid, f)  # scalar fields: a NaN loss weight or regression target
            batch[f] = torch.tensor(values)
    return batch


def _pad(tensors: list[torch.Tensor], axis: int, pad_value: float, field: str,
         ids: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ndim = tensors[0].dim()
    if not -ndim <= axis < ndim:
        raise ShapeError(f"field {field!r}: cannot pad axis {axis} of a {ndim}-d tensor", source=field)
    ax = axis % ndim
    lengths = torch.tensor([t.shape[ax] for t in tensors], dtype=torch.int64)
    max_len = int(lengths.max())
    out_shape = list(tensors[0].shape)
    out_shape[ax] = max_len
    out = tensors[0].new_full((len(tensors), *out_shape), pad_value)
    for i, t in enumerate(tensors):
        if [s for a, s in enumerate(t.shape) if a != ax] != [s for a, s in enumerate(out_shape) if a != ax]:
            raise ShapeError(f"sample {ids[i]!r}, field {field!r}: shape {tuple(t.shape)} differs from "
                             f"{tuple(tensors[0].shape)} off the padded axis {ax}", source=f"{ids[i]}/{field}")
        out[i].narrow(ax, 0, t.shape[ax]).copy_(t)
    mask = torch.arange(max_len)[None, :] < lengths[:, None]  # (batch, max_len)
    return out, mask, lengths
