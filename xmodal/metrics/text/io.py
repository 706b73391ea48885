"""Readers for caption files: COCO annotations, COCO results, and plain JSON mappings."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from xmodal.config.loaders import read_json
from xmodal.errors import DataError


def _load(path: str | Path) -> Any:
    """UTF-8 JSON; a repeated key is an error (``json.loads`` would keep the last one silently)."""
    return read_json(path)


def _entries(data: object, path: str | Path) -> list[tuple[object, object]] | None:
    """(image_id, caption) pairs of a COCO annotation or result file, or None for a plain mapping."""
    if isinstance(data, dict) and "annotations" in data:
        data = data["annotations"]
    if isinstance(data, list):
        out = []
        for n, item in enumerate(data):
            if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
                raise DataError(f"entry {n} lacks 'image_id' or 'caption'", path)
            out.append((item["image_id"], item["caption"]))
        return out
    if isinstance(data, dict):
        return None
    raise DataError("expected COCO annotations, a COCO result list, or a JSON object of captions", path)


def read_references(path: str | Path) -> dict[object, list[str]]:
    """``{id: [captions]}`` from a COCO annotation file, a COCO result-style list, or plain JSON."""
    data = _load(path)
    pairs = _entries(data, path)
    if pairs is None:
        return {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
    refs: dict[object, list[str]] = defaultdict(list)
    for k, c in pairs:
        refs[k].append(c)  # type: ignore[arg-type]
    return dict(refs)


def read_candidates(path: str | Path) -> dict[object, str]:
    """``{id: caption}`` from a COCO result file (``[{"image_id", "caption"}]``) or plain JSON."""
    data = _load(path)
    pairs = _entries(data, path)
    if pairs is None:
        plain: dict[object, str] = {}
        for k, v in data.items():
            if isinstance(v, list):
                if len(v) != 1:
                    raise DataError(f"id {k!r}: expected one candidate caption, got {len(v)}", path)
                v = v[0]
            plain[k] = v
        return plain
    out: dict[object, str] = {}
    for k, c in pairs:
        if k in out:
            raise DataError(f"id {k!r}: more than one candidate caption", path)
        out[k] = c  # type: ignore[assignment]
    return out
