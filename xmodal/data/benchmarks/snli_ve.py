"""SNLI-VE ``snli_ve_{train,dev,test}.jsonl`` (necla-ml/SNLI-VE): one SNLI pair a line whose premise is the
Flickr30k image ``Flikr30kID`` (sic), hypothesis ``sentence2``, label ``gold_label``. The generator writes every
record with its keys sorted; the writer does the same."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from xmodal.data.benchmarks._vl_files import PathLike, get, iter_jsonl
from xmodal.errors import DataError

Label = Literal["entailment", "neutral", "contradiction"]
LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class EntailmentPair:
    pair_id: str  # e.g. "2248275918.jpg#0r1n"
    image: str  # Flikr30kID, e.g. "2248275918.jpg"
    hypothesis: str  # sentence2
    gold_label: str
    premise: str = ""  # sentence1: the original caption, not an input of the task
    caption_id: str = ""
    annotator_labels: list[str] = field(default_factory=list)


def read_snli_ve(path: PathLike) -> list[EntailmentPair]:
    """The pairs of an SNLI-VE JSON-lines file, in order; a bad line is an error naming file and line."""
    p = Path(path)
    out = []
    for lineno, rec in iter_jsonl(p):
        w = f"line {lineno}"
        label = get(rec, "gold_label", str, w, p)
        if label not in LABELS:
            raise DataError(f"{w}: gold_label {label!r} is not one of {', '.join(LABELS)}", source=p)
        labels = rec.get("annotator_labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{w}: annotator_labels must be a list of strings", source=p)
        out.append(EntailmentPair(get(rec, "pairID", str, w, p), get(rec, "Flikr30kID", str, w, p),
                                  get(rec, "sentence2", str, w, p), label, str(rec.get("sentence1", "")),
                                  str(rec.get("captionID", "")), list(labels)))
    return out


def write_snli_ve(path: PathLike, pairs: list[EntailmentPair]) -> None:
    """One JSON object a line with SNLI's keys plus ``Flikr30kID``, sorted; parse fields are left empty."""
    lines = []
    for i, pair in enumerate(pairs):
        if pair.gold_label not in LABELS:
            raise DataError(f"pair #{i}: gold_label {pair.gold_label!r} is not one of {', '.join(LABELS)}",
                            source=path)
        rec = {
            "Flikr30kID": pair.image,
            "annotator_labels": list(pair.annotator_labels) or [pair.gold_label],
            "captionID": pair.caption_id,
            "gold_label": pair.gold_label,
            "pairID": pair.pair_id,
            "sentence1": pair.premise,
            "sentence1_binary_parse": "",
            "sentence1_parse": "",
            "sentence2": pair.hypothesis,
            "sentence2_binary_parse": "",
            "sentence2_parse": "",
        }
        lines.append(json.dumps(rec, sort_keys=True) + "\n")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(lines), encoding="utf-8")
