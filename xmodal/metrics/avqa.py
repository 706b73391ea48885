"""MUSIC-AVQA accuracy per question type, per scenario and overall, as GeWu-Lab/MUSIC-AVQA
``net_grd_avst/main_avst.py:test`` computes it.

Every annotation entry is scored once (the original test file repeats 55 question ids; each entry counts), its
type read from the entry itself (the reference reads types by position from a hard-coded file). A prediction
is correct when it equals ``anser`` exactly. ``<Scenario>/Avg`` and ``Overall`` pool correct answers over
questions, they are not means of the types; ``Overall`` counts every entry, also one whose type is outside the
nine the breakdown names (as the reference's ``correct / total``). A type with no question is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xmodal.data.benchmarks.music_avqa import AVQA_TYPES, AVQARecord
from xmodal.errors import MetricInputError

__all__ = ["avqa_accuracy"]


def avqa_accuracy(records: Sequence[AVQARecord], predictions: Mapping[str, str]) -> dict[str, float]:
    """Percent accuracy keyed ``Audio/Counting`` ... ``Audio-Visual/Avg``, ``Overall``. ``predictions`` maps
    ``str(question_id)`` to an answer; an entry without one is wrong, predictions for unknown ids are ignored."""
    if not records:
        raise MetricInputError("no questions to score")
    tally: dict[tuple[str, str], list[int]] = {t: [0, 0] for t in AVQA_TYPES}
    correct = 0
    for r in records:
        hit = int(predictions.get(str(r.question_id)) == r.anser)
        correct += hit
        key = (r.type[0], r.type[1])
        if key in tally:
            tally[key][0] += hit
            tally[key][1] += 1
    out: dict[str, float] = {}
    for scenario in ("Audio", "Visual", "Audio-Visual"):
        kinds = [t for t in AVQA_TYPES if t[0] == scenario]
        for t in kinds:
            if tally[t][1]:
                out[f"{scenario}/{t[1]}"] = 100 * tally[t][0] / tally[t][1]
        hits, count = sum(tally[t][0] for t in kinds), sum(tally[t][1] for t in kinds)
        if count:
            out[f"{scenario}/Avg"] = 100 * hits / count
    out["Overall"] = 100 * correct / len(records)
    return out
