"""The page ``xmodal generate`` writes beside its samples: ``report.html`` shows every file it wrote (images
inline, audio and video with players, other files as links), the run's metrics beside its baselines, and how
the samples were drawn. Files are referenced by relative paths, so the folder can be moved or zipped whole."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

REPORT = "report.html"
IMAGE = (".png", ".jpg", ".jpeg", ".gif", ".svg")
AUDIO = (".wav", ".flac", ".mp3", ".ogg")
VIDEO = (".mp4", ".webm")


def _item(path: Path, out: Path) -> str:
    rel = html.escape(path.relative_to(out).as_posix())
    suffix = path.suffix.lower()
    if suffix in IMAGE:
        body = f'<img src="{rel}" alt="{rel}" style="image-rendering: pixelated; max-width: 420px">'
    elif suffix in AUDIO:
        body = f'<audio controls src="{rel}"></audio>'
    elif suffix in VIDEO:
        body = f'<video controls src="{rel}" style="max-width: 420px"></video>'
    else:  # MIDI, token files, tables: a link
        body = f'<a href="{rel}">{rel}</a>'
    return f'<figure style="display:inline-block; margin:6px">{body}<figcaption>{rel}</figcaption></figure>'


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = [("model", metrics.get("model", {}))] + list(metrics.get("baselines", {}).items())
    names = sorted({k for _, row in rows for k in row})
    if not names:
        return ""
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td>{html.escape(who)}</td>" + "".join(
            f"<td>{row[n]:.4g}</td>" if isinstance(row.get(n), (int, float)) else "<td></td>" for n in names)
        + "</tr>" for who, row in rows)
    primary = html.escape(str(metrics.get("primary")))
    return (f"<h2>Evaluation at the end of training (primary: {primary}, split {html.escape(str(metrics.get('split')))}"
            f", n = {metrics.get('n')})</h2><table border=1 cellpadding=4><tr><th></th>{head}</tr>{body}</table>")


def write_sample_report(out: Path, files: list[Path], info: dict[str, Any], metrics: dict[str, Any] | None) -> Path:
    """``out/report.html`` over ``files`` (inside ``out``); ``info`` (task, run, checkpoint, seed, n, modality)
    is shown at the top and written to ``out/generate.json`` with the file list."""
    doc = {**info, "files": [p.relative_to(out).as_posix() for p in files]}
    (out / "generate.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    facts = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in info.items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>xmodal samples</title></head><body "
        "style='font-family: sans-serif'>"
        f"<h1>Samples of {html.escape(str(info.get('task')))}</h1><ul>{facts}</ul>"
        f"{_metrics_table(metrics) if metrics else ''}"
        f"<h2>{len(files)} files</h2>" + "".join(_item(p, out) for p in files) + "</body></html>\n"
    )
    path = out / REPORT
    path.write_text(page, encoding="utf-8")
    return path
