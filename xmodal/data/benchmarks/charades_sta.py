"""Charades-STA (``vid start end##sentence``, one query a line, as TALL's README gives it) and ActivityNet
Captions (``{"v_x": {"duration", "timestamps": [[s, e], ...], "sentences": [...]}}``): temporal moment queries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from xmodal.data.benchmarks._vl_files import (
    PathLike,
    dump_json,
    existing,
    get,
    load_json,
    number_list,
    read_text,
)
from xmodal.errors import DataError


@dataclass(frozen=True)
class MomentQuery:
    """A sentence and the moment [start, end] (seconds) of ``video`` that it describes."""

    video: str
    start: float
    end: float
    sentence: str
    duration: float | None = None  # ActivityNet Captions gives it; Charades-STA does not


def _seconds(text: str, what: str, lineno: int, p: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"line {lineno}: {what} {text!r} is not a number", source=p) from None
    if not math.isfinite(value):
        raise DataError(f"line {lineno}: {what} {text!r} is not finite", source=p)
    return value


def read_charades_sta(path: PathLike) -> list[MomentQuery]:
    """Every line ``vid start end##sentence`` of a Charades-STA file, in order (blank lines are not queries)."""
    p = existing(path)
    out = []
    for lineno, line in enumerate(read_text(p).splitlines(), start=1):
        if not line.strip():
            continue
        head, sep, sentence = line.partition("##")
        fields = head.split()
        if not sep or len(fields) != 3:
            raise DataError(f"line {lineno}: expected 'video start end##sentence', got {line!r}", source=p)
        start = _seconds(fields[1], "start", lineno, p)
        end = _seconds(fields[2], "end", lineno, p)
        out.append(MomentQuery(fields[0], start, end, sentence.rstrip("\r")))
    return out


def _fmt(seconds: float) -> str:
    # repr gives the shortest text that reads back to the same float: "6.9", "24.0" as the release writes them
    return repr(float(seconds))


def write_charades_sta(path: PathLike, queries: list[MomentQuery]) -> None:
    """One ``vid start end##sentence`` line per query, ``\\n`` terminated."""
    lines = []
    for i, q in enumerate(queries):
        if " " in q.video or not q.video or "##" in q.sentence or "\n" in q.sentence:
            raise DataError(f"query #{i}: a video id without spaces and a one-line sentence without '##' "
                            f"are needed, got {q.video!r}, {q.sentence!r}", source=path)
        lines.append(f"{q.video} {_fmt(q.start)} {_fmt(q.end)}##{q.sentence}\n")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(lines), encoding="utf-8")


def read_activitynet_captions(path: PathLike) -> list[MomentQuery]:
    """Every (timestamp, sentence) pair of an ActivityNet Captions JSON (train.json, val_1.json, val_2.json),
    videos in file order."""
    p = existing(path)
    data = load_json(p)
    if not isinstance(data, dict):
        raise DataError("expected an object keyed by video id", source=p)
    out = []
    for vid, entry in data.items():
        duration = float(get(entry, "duration", float, vid, p))
        stamps = get(entry, "timestamps", list, vid, p)
        sentences = get(entry, "sentences", list, vid, p)
        if len(stamps) != len(sentences):
            raise DataError(f"{vid}: {len(stamps)} timestamps but {len(sentences)} sentences", source=p)
        for j, (stamp, sentence) in enumerate(zip(stamps, sentences)):
            s, e = number_list(stamp, 2, "a timestamp", f"{vid} timestamps[{j}]", p)
            if not isinstance(sentence, str):
                raise DataError(f"{vid} sentences[{j}]: must be a string", source=p)
            out.append(MomentQuery(vid, float(s), float(e), sentence, duration))
    return out


def write_activitynet_captions(path: PathLike, queries: list[MomentQuery]) -> None:
    """Group ``queries`` by video, in first-seen order; every query needs its video's ``duration``."""
    data: dict[str, dict] = {}
    for i, q in enumerate(queries):
        if q.duration is None:
            raise DataError(f"query #{i} ({q.video}): ActivityNet Captions needs the video duration", source=path)
        entry = data.setdefault(q.video, {"duration": q.duration, "timestamps": [], "sentences": []})
        entry["timestamps"].append([q.start, q.end])
        entry["sentences"].append(q.sentence)
    dump_json(path, data)
