"""The generic task pipeline: the parts every task composes, so that a task is a dataset view plus a recipe.

From a task's datasets (a manifest or table through :mod:`xmodal.tasks.sources`, with per-field transforms from
:mod:`xmodal.tasks.fields`, or a task's own view) and a ``model:`` plan, :func:`assemble` builds the
:class:`~xmodal.tasks.base.TaskBundle`: the model (:func:`xmodal.models.build_model`), the objective (the losses
registry), a collate function that pads every variable-length field with its mask, the evaluation and its
primary metric, the baselines every run reports, and a prediction writer.

Task kinds: ``contrastive`` (every ordered pair of modalities scored by retrieval, R@1/5/10, MedR, MeanR;
baseline: random embeddings), ``classification`` (accuracy, macro-F1; baseline: the majority class),
``multilabel`` (a classifier trained with BCE on multi-hot targets; mean average precision and micro-F1;
baseline: the training label frequencies as constant scores) and ``regression`` (MAE, RMSE; baseline: the
training mean).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import permutations
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from xmodal.errors import ConfigError
from xmodal.modalities import get_modality
from xmodal.tasks.base import TaskBundle

Kind = Literal["contrastive", "classification", "multilabel", "regression"]
KINDS = ("contrastive", "classification", "multilabel", "regression")
LOSS_OF_KIND = {"contrastive": "info_nce", "classification": "cross_entropy", "multilabel": "bce",
                "regression": "mse"}
PRIMARY_OF_KIND = {"classification": "accuracy", "multilabel": "mean_average_precision", "regression": "rmse"}


# ------------------------------------------------------------------------------------------------ batching
def collate_fields(samples: list[dict[str, Any]], modalities: Mapping[str, str]) -> dict[str, Any]:
    """Stack fixed-size fields and pad variable-length ones (by their spec's length axis) with
    ``<field>_mask`` (True = valid); sample ids stay a list."""
    from xmodal.data.sample import collate

    specs = {f: get_modality(m) for f, m in modalities.items()}
    # text tokenised into word-piece ids is a sequence of tokens: padded along its only axis
    pad = {f: 0 if s.is_text else s.length_axis for f, s in specs.items()}
    pad = {f: axis for f, axis in pad.items() if axis is not None and f in samples[0]
           and isinstance(samples[0][f], torch.Tensor) and samples[0][f].dim() > 0
           and not (specs[f].is_text and samples[0][f].is_floating_point())}  # sentence embeddings: stacked
    batch = collate(samples, pad_modalities=pad)
    if "id" in samples[0]:
        batch["id"] = [s["id"] for s in samples]
    for f in pad:
        batch.pop(f"{f}_lengths", None)
    return batch


def make_collate(modalities: Mapping[str, str]) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The collate function of samples holding ``modalities`` ({field: modality name})."""
    return partial(collate_fields, modalities=dict(modalities))


def _batches(dataset: Dataset, collate: Callable, batch_size: int, device: torch.device):
    from xmodal.train.loop import to_device

    for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]  # type: ignore[arg-type]
        yield to_device(collate(items), device)


@torch.no_grad()
def outputs_all(model: nn.Module, dataset: Dataset, collate: Callable, batch_size: int = 256) -> dict[str, Any]:
    """Every per-sample output of ``model`` over ``dataset`` in order, concatenated (on the CPU, float32), and
    the sample ids under ``"id"``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    ids: list[str] = []
    for batch in _batches(dataset, collate, batch_size, device):
        out = model(batch)
        n = len(batch["id"]) if "id" in batch else next(v.shape[0] for v in out.values() if v.ndim)
        batch_ids = batch.get("id", range(len(ids), len(ids) + n))
        ids += [str(i) for i in (batch_ids.tolist() if isinstance(batch_ids, torch.Tensor) else batch_ids)]
        for key, value in out.items():
            if value.ndim and value.shape[0] == n:
                parts.setdefault(key, []).append(value.float().cpu())
    model.train(was_training)
    return {"id": ids, **{k: torch.cat(v) for k, v in parts.items()}}


# ----------------------------------------------------------------------------------------------- retrieval
def embed_all(model: nn.Module, dataset: Dataset, collate: Callable, modalities: Sequence[str],
              batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Unit-norm embeddings ``{modality: (N, embed_dim)}`` of every item of ``dataset``, in order."""
    out = outputs_all(model, dataset, collate, batch_size)
    return {m: out[f"{m}_emb"] for m in modalities}


def retrieval_table(embeddings: Mapping[str, torch.Tensor], pair: str = "{q}->{g}") -> dict[str, dict[str, float]]:
    """``{"image->audio": {R@1, R@5, R@10, MedR, MeanR}, ...}`` for every ordered pair of modalities."""
    from xmodal.metrics.retrieval import cosine_similarity_matrix, retrieval_metrics

    return {pair.format(q=q, g=g): retrieval_metrics(cosine_similarity_matrix(embeddings[q], embeddings[g]))
            for q, g in permutations(embeddings, 2)}


def flat(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{"a->b": {"R@1": x}}`` -> ``{"a->b/R@1": x}``."""
    return {f"{row}/{k}": float(v) for row, metrics in table.items() for k, v in metrics.items()}


def retrieval_evaluate(model: nn.Module, dataset: Dataset, *, collate: Callable, modalities: Sequence[str],
                       pair: str = "{q}->{g}", batch_size: int = 256) -> dict[str, float]:
    """Flat retrieval metrics ``{"<q>-><g>/R@1": ..., "mean/R@1": ...}`` on ``dataset``; ``mean/R@1`` (the mean
    over ordered pairs) is the primary metric."""
    table = retrieval_table(embed_all(model, dataset, collate, modalities, batch_size), pair)
    metrics = flat(table)
    metrics["mean/R@1"] = sum(row["R@1"] for row in table.values()) / len(table)
    return metrics


def retrieval_baselines(dataset: Dataset, *, modalities: Sequence[str], dim: int,
                        pair: str = "{q}->{g}") -> dict[str, dict[str, float]]:
    """The random-embedding baseline of every ordered pair (seeded by the pair's position)."""
    from xmodal.metrics.retrieval import random_baseline

    n = len(dataset)  # type: ignore[arg-type]
    table = {pair.format(q=q, g=g): random_baseline(n, dim=dim, seed=s)
             for s, (q, g) in enumerate(permutations(modalities, 2))}
    metrics = flat(table)
    metrics["mean/R@1"] = sum(row["R@1"] for row in table.values()) / len(table)
    return {"random": metrics}


def write_json(path: Path, doc: Any, indent: int | None = None) -> Path:
    """A task's prediction file: ``doc`` as JSON and a final newline, the parent folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=indent) + "\n", encoding="utf-8")
    return path


def write_retrieval(model: nn.Module, dataset: Dataset, path: Path, *, collate: Callable,
                    modalities: Sequence[str], batch_size: int = 256) -> Path:
    """Embeddings of every modality (``.safetensors``, with ids in its metadata) or, for ``.json``, ids,
    embeddings and the top-10 gallery items of every query per ordered pair."""
    out = outputs_all(model, dataset, collate, batch_size)
    emb = {m: out[f"{m}_emb"].contiguous() for m in modalities}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(emb, str(path), metadata={"ids": json.dumps(out["id"])})
        return path
    doc: dict[str, Any] = {"ids": out["id"], "embeddings": {m: e.tolist() for m, e in emb.items()}, "top10": {}}
    for q, g in permutations(modalities, 2):
        sim = emb[q] @ emb[g].T
        top = sim.topk(min(10, sim.shape[1]), dim=1)
        doc["top10"][f"{q}->{g}"] = [[{"id": out["id"][j], "similarity": round(float(s), 6)}
                                      for j, s in zip(idx.tolist(), val.tolist())]
                                     for idx, val in zip(top.indices, top.values)]
    path.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ classification
def _targets(dataset: Dataset, target: str) -> torch.Tensor:
    values = [dataset[i][target] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack(values) if values and isinstance(values[0], torch.Tensor) else torch.as_tensor(values)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 over the ``classes`` labels, F1 = 0 for a class never predicted nor present
    (scikit-learn's ``f1_score(average="macro", zero_division=0)``; written here from the confusion matrix so
    that the core package does not depend on scikit-learn for one formula)."""
    pred = logits.argmax(1).long()
    y = labels.long().view(-1)
    confusion = torch.bincount(y * classes + pred, minlength=classes * classes).view(classes, classes).double()
    tp = confusion.diag()
    denom = confusion.sum(0) + confusion.sum(1)  # predicted + actual = 2 tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    return {"accuracy": float((pred == y).double().mean()), "macro_f1": float(f1.mean())}


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one class, ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (tied
    scores form one step), as scikit-learn's ``average_precision_score``; NaN without positives."""
    order = torch.argsort(scores.double(), descending=True, stable=True)
    s, y = scores.double()[order], positives.double()[order]
    if y.sum() == 0:
        return float("nan")
    last = torch.cat([s[1:] != s[:-1], torch.tensor([True])])  # the last index of every run of equal scores
    tp = torch.cumsum(y, 0)[last]
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp / seen, tp / y.sum()
    steps = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), recall]))
    return float((steps * precision).sum())


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Mean average precision over the classes with at least one positive, and micro-F1 at probability 0.5."""
    y = targets.double()
    aps = [average_precision(logits[:, c], y[:, c]) for c in range(y.shape[1]) if y[:, c].sum() > 0]
    pred = (logits > 0).double()
    tp, fp, fn = (pred * y).sum(), (pred * (1 - y)).sum(), ((1 - pred) * y).sum()
    micro = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else torch.tensor(0.0)
    return {"mean_average_precision": float(sum(aps) / len(aps)) if aps else float("nan"),
            "micro_f1": float(micro)}


def regression_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    err = pred.double().view(-1) - y.double().view(-1)
    return {"mae": float(err.abs().mean()), "rmse": float(err.square().mean().sqrt())}


def supervised_evaluate(model: nn.Module, dataset: Dataset, *, collate: Callable, kind: str, target: str,
                        classes: int | None, batch_size: int = 256) -> dict[str, float]:
    out = outputs_all(model, dataset, collate, batch_size)
    y = _targets(dataset, target)
    if kind == "classification":
        return classification_metrics(out["logits"], y, int(classes or out["logits"].shape[1]))
    if kind == "multilabel":
        return multilabel_metrics(out["logits"], y)
    return regression_metrics(out["prediction"], y)


def supervised_baselines(dataset: Dataset, *, train_set: Dataset, kind: str, target: str,
                         classes: int | None) -> dict[str, dict[str, float]]:
    """Majority class (classification) or the training mean (regression), fitted on ``train_set``."""
    y_train, y = _targets(train_set, target), _targets(dataset, target)
    if kind == "classification":
        n = int(classes or int(y_train.max()) + 1)
        majority = int(torch.bincount(y_train.long(), minlength=n).argmax())
        logits = torch.nn.functional.one_hot(torch.full_like(y.long(), majority), n).float()
        return {"majority": classification_metrics(logits, y, n)}
    if kind == "multilabel":
        frequency = y_train.double().mean(0).clamp(1e-6, 1 - 1e-6)
        return {"prior": multilabel_metrics(torch.logit(frequency).expand(y.shape[0], -1), y)}
    return {"mean": regression_metrics(torch.full(y.shape, float(y_train.double().mean())), y)}


def write_supervised(model: nn.Module, dataset: Dataset, path: Path, *, collate: Callable, kind: str,
                     label_names: Sequence[str] | None = None, batch_size: int = 256) -> Path:
    """Predictions as JSON (``.json``: one record per sample) or CSV: the id, the predicted label and every
    class probability (classification; multilabel: the labels with probability >= 0.5 joined by ``|``), or the
    predicted value (regression)."""
    out = outputs_all(model, dataset, collate, batch_size)
    records: list[dict[str, Any]] = []
    if kind == "multilabel":
        probs = out["logits"].sigmoid()
        names = list(label_names) if label_names else [str(c) for c in range(probs.shape[1])]
        for sid, p in zip(out["id"], probs.tolist()):
            chosen = "|".join(n for n, v in zip(names, p) if v >= 0.5)
            records.append({"id": sid, "labels": chosen, **{f"p_{n}": round(v, 6) for n, v in zip(names, p)}})
    elif kind == "classification":
        probs = out["logits"].softmax(1)
        names = list(label_names) if label_names else [str(c) for c in range(probs.shape[1])]
        for sid, p in zip(out["id"], probs.tolist()):
            best = max(range(len(p)), key=p.__getitem__)
            records.append({"id": sid, "label": names[best], **{f"p_{n}": round(v, 6) for n, v in zip(names, p)}})
    else:
        records = [{"id": sid, "prediction": float(v)} for sid, v in zip(out["id"], out["prediction"].view(-1).tolist())]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    else:
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(records[0]) if records else ["id"])
            writer.writeheader()
            writer.writerows(records)
    return path


# ------------------------------------------------------------------------------------------------ datasets
def dataset_root(root: str | None, builder: str, options: Mapping[str, Any] | None, required: Sequence[str]) -> Path:
    """The folder holding a task's official files ``required`` (names relative to it): ``root`` as given, or,
    for ``root: null``, ``<default data root>/<builder>-<hash of options>``. When files are missing and
    ``options`` is not None, the scene builder ``builder`` writes them there first (under a lock, so torchrun
    ranks build once)."""
    import hashlib

    from xmodal.data.registry import get_builder
    from xmodal.data.synth.emoji_speech import file_lock
    from xmodal.errors import DataError
    from xmodal.tasks.trimodal_retrieval import default_data_root

    if root is None:
        if options is None:
            raise ConfigError("data.root: give the folder of the official files, or builder options in data.build")
        tag = hashlib.sha1(json.dumps(dict(options), sort_keys=True).encode()).hexdigest()[:8]
        root = str(default_data_root() / f"{builder}-{tag}")
    path = Path(root)

    def missing() -> list[str]:
        return [name for name in required if not (path / name).exists()]

    if missing():
        if options is None:
            raise DataError(f"missing {', '.join(missing())} (set data.build to build {builder} there)", source=path)
        path.mkdir(parents=True, exist_ok=True)
        with file_lock(path / ".build.lock"):
            if missing():
                get_builder(builder).build(path, **dict(options))
    return path


# ------------------------------------------------------------------------------------------------ assembly
def eval_batch_size(cfg: Mapping[str, Any]) -> int:
    """``eval.batch_size`` of a recipe (samples per forward pass in evaluation and prediction)."""
    from xmodal.config.recipe import parse_eval_config

    return parse_eval_config(cfg.get("eval")).batch_size


def assemble(*, kind: str, model: nn.Module, modalities: Mapping[str, str], train_set: Dataset,
             val_set: Dataset | None, collate: Callable | None = None, loss: str | None = None,
             loss_settings: Mapping[str, Any] | None = None, target: str = "label", classes: int | None = None,
             label_names: Sequence[str] | None = None, pair: str = "{q}->{g}", primary: str | None = None,
             batch_size: int = 256, split: str = "val", artifacts: Mapping[str, Any] | None = None) -> TaskBundle:
    """The TaskBundle of a task of ``kind`` over datasets of samples holding ``modalities`` ({field: modality})
    and, for supervised kinds, ``target``."""
    from xmodal.models import build_loss

    if kind not in KINDS:
        raise ConfigError(f"task kind {kind!r}: expected one of {', '.join(KINDS)}")
    collate = collate or make_collate(modalities)
    settings = dict(loss_settings or {})
    if kind != "contrastive":
        settings.setdefault("target", target)
    objective = build_loss(loss or LOSS_OF_KIND[kind], "loss", **settings)
    names = list(modalities)
    if kind == "contrastive":
        dim = int(getattr(model, "embed_dim", 256))
        evaluate = partial(retrieval_evaluate, collate=collate, modalities=names, pair=pair, batch_size=batch_size)
        baselines = partial(retrieval_baselines, modalities=names, dim=dim, pair=pair)
        predict = partial(write_retrieval, collate=collate, modalities=names, batch_size=batch_size)
        primary, higher = primary or "mean/R@1", True
    else:
        evaluate = partial(supervised_evaluate, collate=collate, kind=kind, target=target, classes=classes,
                           batch_size=batch_size)
        baselines = partial(supervised_baselines, train_set=train_set, kind=kind, target=target, classes=classes)
        predict = partial(write_supervised, collate=collate, kind=kind, label_names=label_names,
                          batch_size=batch_size)
        primary = primary or PRIMARY_OF_KIND[kind]
        higher = primary not in ("mae", "rmse")
    return TaskBundle(model=model, loss=objective, train_set=train_set, collate=collate, val_set=val_set,
                      evaluate=evaluate, coupled_loss=bool(getattr(objective, "coupled", False)), primary=primary,
                      higher_is_better=higher,
                      baselines=baselines, predict=predict, artifacts=dict(artifacts or {}), split=split)
