"""The multimodal task on shard folders (``xmodal data shard``): ``data: {shards: DIR, val_shards: DIR}``.

The training folder is streamed (:class:`~xmodal.data.shard_dataset.ShardDataset`; the trainer follows the
shards' order and resumes inside an epoch, ``xmodal/train/streaming.py``); the validation folder, which should
be small, is read into memory. Samples were transformed when the shards were written, so only what depends on
the task is done on reading: the stored label becomes a class index (classification), a multi-hot vector over
the label names (multilabel: a delimited label set such as ``"cat|dog"``, split as a table's is) or a number
(regression), and text is tokenised for its tower. Label names come from the training shards' ``.json``
members (sorted, as for a table) and are saved with the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, cast

import torch
from torch.utils.data import Dataset

from xmodal.errors import ConfigError, DataError
from xmodal.modalities import get_modality
from xmodal.tasks import pipeline
from xmodal.tasks.base import TaskBundle
from xmodal.tasks.sources import label_delimiter, multi_hot, split_labels

SUPPORTED_KINDS = ("classification", "multilabel", "regression", "contrastive")


class ShardSampleMap:
    """Per-sample mapping applied as shards are read (picklable, so dataloader workers can run it);
    ``delimiter`` set: multilabel, the stored label is a delimited set of ``label_index``'s names."""

    def __init__(self, target: str | None, label_index: Mapping[str, int] | None,
                 text: Mapping[str, Callable[[Any], Any]], delimiter: str | None = None) -> None:
        self.target, self.label_index, self.text = target, dict(label_index or {}), dict(text)
        self.delimiter = delimiter

    def label(self, sample: Mapping[str, Any]) -> Any:
        value = sample.get("label")
        sid = str(sample.get("id"))
        if value is None:
            raise DataError(f"sample {sid!r} has no stored label", source=f"{sid}/label")
        if self.delimiter is not None:  # multilabel: a multi-hot vector over the training labels, as for a table
            return multi_hot(value, self.delimiter, self.label_index, f"sample {sid!r}", "the training shards",
                             f"{sid}/label")
        if not self.label_index:  # regression
            try:
                return float(value)
            except (TypeError, ValueError):
                raise DataError(f"label of sample {sid!r} is not a number: {value!r}", source=f"{sid}/label") from None
        if str(value) not in self.label_index:
            raise DataError(f"sample {sid!r}: label {value!r} never occurs in the training shards",
                            source=f"{sid}/label")
        return self.label_index[str(value)]

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        if self.target is not None:
            out[self.target] = self.label(sample)
        if self.target != "label":
            out.pop("label", None)
        for field, tokenise in self.text.items():
            out[field] = tokenise(out[field])
        return out


def _sizes(first: Mapping[str, Any], modalities: Mapping[str, str], states: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Encoder settings the data decides, from the first sample and the fitted transforms of the index."""
    out: dict[str, dict[str, int]] = {}
    for f, m in modalities.items():
        name = get_modality(m).name
        if name == "categorical":
            vocab = (states.get(f) or {}).get("state", {}).get("vocab", {})
            out[f] = {"num_categories": max(1, len(vocab))}
        elif name == "numeric":
            out[f] = {"in_dim": int(torch.as_tensor(first[f]).numel())}
        elif name == "graph":
            value = first[f]
            out[f] = {"in_dim": int((value["x"] if isinstance(value, Mapping) else value.x).shape[1])}
    return out


def build(cfg: dict[str, Any], d: Any, artifacts: dict[str, Any] | None = None) -> TaskBundle:
    """The TaskBundle of a multimodal recipe whose ``data.shards`` names a shard folder (``artifacts``: those
    a trained run saved; its label names are used as saved)."""
    from xmodal.data.shard_dataset import ShardDataset
    from xmodal.models import build_model
    from xmodal.tasks.fields import field_transform
    from xmodal.tasks.multimodal import _plan

    if d.kind not in SUPPORTED_KINDS:
        raise ConfigError(f"data.kind: {d.kind!r} is not read from shards; expected one of {', '.join(SUPPORTED_KINDS)}")
    try:
        train = ShardDataset(d.shards, shuffle=d.shuffle, seed=d.seed)
    except FileNotFoundError as exc:
        raise ConfigError(f"data.shards: {exc}") from None
    modalities = {k: str(v) for k, v in (d.fields or train.fields).items()}
    for f in modalities:
        if f not in train.fields:
            raise ConfigError(f"data.fields.{f}: the shards in {d.shards} hold no field {f!r}; they hold "
                              f"{', '.join(train.fields)}")
    plan_encoders = (cfg.get("model") or {}).get("encoders") or {}
    families = {f: (e if isinstance(e, str) and e != "default" else (e or {}).get("family") if isinstance(e, dict)
                    else None) for f, e in plan_encoders.items()}
    text = {f: t for f, m in modalities.items() if get_modality(m).is_text
            and (t := field_transform(f, get_modality(m), families.get(f))) is not None}
    target = None if d.kind == "contrastive" else d.target
    labels: list[str] | None = None
    stored = train.labels() if target is not None else []
    delimiter = None
    if d.kind == "multilabel":
        missing = next((i for i, v in enumerate(stored) if v is None), None)
        if missing is not None:
            raise DataError(f"data.shards: sample {missing} of {d.shards} has no stored label set (shard with "
                            "--target)", source=d.shards)
        delimiter = d.label_delimiter or label_delimiter(stored)
    if d.kind in ("classification", "multilabel") and (artifacts or {}).get("labels") is not None:
        labels = [str(n) for n in (artifacts or {})["labels"]]
    elif d.kind in ("classification", "multilabel"):
        names = ({p for v in stored for p in split_labels(v, delimiter)} if delimiter is not None
                 else {str(v) for v in stored})
        labels = sorted(names)
        if len(labels) < 2:
            raise ConfigError(f"data.shards: {len(labels)} label in the training shards; at least 2 are needed")
    mapping = ShardSampleMap(target, {n: i for i, n in enumerate(labels)} if labels else None, text, delimiter)
    train.transform = mapping
    val = None
    if d.val_shards is not None:
        try:
            val_folder = ShardDataset(d.val_shards, transform=mapping)
        except FileNotFoundError as exc:
            raise ConfigError(f"data.val_shards: {exc}") from None
        val = [{k: v for k, v in s.items() if k != "__shard__"} for s in val_folder]
        if not val:
            raise ConfigError(f"data.val_shards: {d.val_shards} holds no samples")
    first = next(iter(ShardDataset(d.shards, transform=mapping)))
    classes = len(labels) if labels else None
    model = build_model(_plan(cfg, modalities, d.kind, _sizes(first, modalities, train.index.get("transforms", {})),
                              classes))
    saved: dict[str, Any] = {"fields": modalities}  # this run's artifacts (``artifacts``: a former run's)
    if labels:
        saved["labels"] = labels
    # the pipeline types its datasets as map-style; the stream and a list of samples are what it iterates
    bundle = pipeline.assemble(kind=d.kind, model=model, modalities=modalities, train_set=cast(Dataset, train),
                               val_set=cast(Dataset, val), target=target or "label", classes=classes,
                               label_names=labels, split="val", artifacts=saved,
                               batch_size=pipeline.eval_batch_size(cfg))
    if target is not None:  # baselines fitted on the training labels (the stream has no indices)
        train_targets = [{target: mapping.label({"id": i, "label": v})} for i, v in enumerate(stored)]
        bundle.baselines = partial(pipeline.supervised_baselines, train_set=cast(Dataset, train_targets), kind=d.kind,
                                   target=target, classes=classes)
    return bundle
