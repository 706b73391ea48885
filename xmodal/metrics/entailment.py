"""Visual entailment accuracy (SNLI-VE; necla-ml/SNLI-VE): top-1 accuracy over the three labels, in percent."""

from __future__ import annotations

from collections.abc import Mapping

from xmodal.errors import MetricInputError

LABELS = ("entailment", "neutral", "contradiction")


def entailment_accuracy(predictions: Mapping[str, str], gold: Mapping[str, str]) -> dict[str, float]:
    """Accuracy in percent of ``predictions`` ({pairID: label}) against ``gold`` ({pairID: label}).

    A pair without a prediction counts as wrong; a prediction that is not one of the three labels, or for a
    pair that is not in ``gold``, is an error (it would otherwise hide a mismatched file)."""
    if not gold:
        raise MetricInputError("no pairs to score", "gold")
    for pair_id, label in predictions.items():
        if label not in LABELS:
            raise MetricInputError(f"pair {pair_id!r}: label {label!r} is not one of {', '.join(LABELS)}",
                                   "predictions")
    unknown = sorted(set(predictions) - set(gold))
    if unknown:
        raise MetricInputError(f"{len(unknown)} predictions for pairs not in the annotations, e.g. {unknown[:3]}",
                               "predictions")
    correct = sum(predictions.get(pair_id) == label for pair_id, label in gold.items())
    return {"accuracy": 100.0 * correct / len(gold)}
