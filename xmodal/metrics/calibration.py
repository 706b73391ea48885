"""Calibration of a classifier: reliability bins of the top-class confidence and the expected calibration
error (ECE), as Guo et al., "On Calibration of Modern Neural Networks" (2017) define them: bin ``m`` holds the
samples whose confidence lies in ``((m-1)/M, m/M]`` (the first bin also holds 0), and
``ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|``."""

from __future__ import annotations

from typing import Any

import torch


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> dict[str, Any]:
    """``{"bins": [{"lower", "upper", "count", "confidence", "accuracy"}], "ece"}`` of class probabilities
    ``probs`` (N, C) against integer ``labels`` (N,); empty bins have ``None`` confidence and accuracy."""
    if probs.ndim != 2 or probs.shape[0] != labels.numel():
        raise ValueError(f"probs must be (N, C) with N = {labels.numel()} labels, got {tuple(probs.shape)}")
    confidence, predicted = probs.double().max(1)
    correct = (predicted == labels.view(-1).long()).double()
    # bin m covers ((m-1)/M, m/M]: ceil(conf * M) - 1, with conf = 0 in the first bin
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    rows, ece, n = [], 0.0, max(1, labels.numel())
    for m in range(bins):
        inside = index == m
        count = int(inside.sum())
        row: dict[str, Any] = {"lower": m / bins, "upper": (m + 1) / bins, "count": count,
                               "confidence": None, "accuracy": None}
        if count:
            conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
            row.update(confidence=conf, accuracy=acc)
            ece += count / n * abs(acc - conf)
        rows.append(row)
    return {"bins": rows, "ece": ece}


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor, classes: int) -> list[list[int]]:
    """Counts ``[true][predicted]`` of the argmax of ``logits``."""
    pred = logits.argmax(1).long()
    y = labels.view(-1).long()
    return torch.bincount(y * classes + pred, minlength=classes * classes).view(classes, classes).tolist()
