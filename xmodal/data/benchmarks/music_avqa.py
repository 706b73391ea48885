"""MUSIC-AVQA (GeWu-Lab/MUSIC-AVQA): ``avqa-{train,val,test}.json`` of ``data/json`` and ``data/json_update``.

Each file is a JSON list of::

    {"video_id": "00000086", "question_id": 28, "type": "[\\"Audio-Visual\\", \\"Existential\\"]",
     "question_content": "Is the <Object> in the video always playing?", "templ_values": "[\\"violin\\"]",
     "question_deleted": 0, "anser": "no"}

``type`` and ``templ_values`` are lists encoded as strings (the official loader decodes them with
``ast.literal_eval``), and the answer key is spelled ``anser``. :meth:`AVQARecord.question_tokens` fills the
``<...>`` placeholders exactly as ``dataloader_avst.py`` does.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xmodal.data.benchmarks._files import PathLike, read_json, write_text
from xmodal.errors import DataError

__all__ = ["AVQA_TYPES", "AVQARecord", "read_avqa", "write_avqa"]

# (scenario, question type) pairs the official test function breaks accuracy down by.
AVQA_TYPES = (
    ("Audio", "Counting"), ("Audio", "Comparative"), ("Visual", "Counting"), ("Visual", "Location"),
    ("Audio-Visual", "Existential"), ("Audio-Visual", "Counting"), ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"), ("Audio-Visual", "Temporal"),
)
_KEYS = ("video_id", "question_id", "type", "question_content", "templ_values", "question_deleted", "anser")


@dataclass(frozen=True)
class AVQARecord:
    """One question. ``type`` and ``templ_values`` are decoded lists; ``extra`` keeps keys we do not know."""

    video_id: str
    question_id: int | str
    type: tuple[str, ...]
    question_content: str
    templ_values: tuple[str, ...]
    anser: str
    question_deleted: int | None = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def question_tokens(self) -> list[str]:
        """The question as dataloader_avst.py tokenises it: split on spaces, the last word's final character
        (the ``?``) dropped, each token containing ``<`` replaced by the next template value."""
        words = self.question_content.rstrip().split(" ")
        words[-1] = words[-1][:-1]
        values = iter(self.templ_values)
        for i, w in enumerate(words):
            if "<" in w:
                try:
                    words[i] = next(values)
                except StopIteration:
                    raise DataError(f"question has more placeholders than templ_values {list(self.templ_values)}",
                                    f"question_id {self.question_id}") from None
        return words


def _string_list(value: object, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise DataError(f"{key} must be a string encoding a list, like '[\"Audio\", \"Counting\"]'", where)
    try:
        decoded = ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        raise DataError(f"{key} {value!r} is not a literal list ({exc})", where) from exc
    if not isinstance(decoded, list) or not all(isinstance(x, str) for x in decoded):
        raise DataError(f"{key} {value!r} must encode a list of strings", where)
    return tuple(decoded)


def read_avqa(path: PathLike) -> list[AVQARecord]:
    """Read an ``avqa-*.json`` file; errors name the entry (``path[index]``)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError("expected a JSON list of question objects", path)
    out = []
    for i, e in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(e, dict):
            raise DataError("expected a question object", where)
        missing = [k for k in _KEYS if k != "question_deleted" and k not in e]
        if missing:
            raise DataError(f"missing keys {missing}", where)
        qid = e["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise DataError(f"question_id must be an integer or a string, got {qid!r}", where)
        for key in ("video_id", "question_content", "anser"):
            if not isinstance(e[key], str):
                raise DataError(f"{key} must be a string, got {e[key]!r}", where)
        qtype = _string_list(e["type"], "type", where)
        if len(qtype) != 2:
            raise DataError(f"type must name a scenario and a question type, got {list(qtype)}", where)
        out.append(AVQARecord(
            video_id=e["video_id"], question_id=qid, type=qtype, question_content=e["question_content"],
            templ_values=_string_list(e["templ_values"], "templ_values", where), anser=e["anser"],
            question_deleted=e.get("question_deleted"), extra={k: v for k, v in e.items() if k not in _KEYS}))
    return out


def write_avqa(path: PathLike, records: Iterable[AVQARecord]) -> None:
    """Write the official layout: ``type`` and ``templ_values`` as JSON-encoded strings, the key ``anser``."""
    entries = []
    for r in records:
        entry: dict[str, Any] = {"video_id": r.video_id, "question_id": r.question_id, "type": json.dumps(list(r.type)),
                                 "question_content": r.question_content,
                                 "templ_values": json.dumps(list(r.templ_values))}
        if r.question_deleted is not None:
            entry["question_deleted"] = r.question_deleted
        entry["anser"] = r.anser
        entry.update(r.extra)
        entries.append(entry)
    write_text(path, json.dumps(entries))
