"""The retrieval report: ``metrics.json`` and a self-contained ``report.html`` (no external file or network).

The HTML holds the metrics of the trained model beside the random-embedding baseline for every ordered pair of
modalities, the training loss curve (a matplotlib PNG, base64-inlined), and a retrieval grid: held-out queries
with their top-k retrieved items (images inline, audio as ``<audio>`` players with base64 WAV, captions), the
ground truth marked.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Pairs shown in the grid: every modality once as query and once as gallery.
GRID_PAIRS = (("text", "image"), ("audio", "image"), ("image", "audio"), ("audio", "text"))


@dataclass
class Item:
    """One held-out item as the report shows it: files are absolute paths."""

    id: str
    caption: str
    image: Path
    audio: Path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def image_data_uri(path: Path) -> str:
    return "data:image/png;base64," + _b64(Path(path).read_bytes())


def audio_data_uri(path: Path) -> str:
    """Any audio file soundfile reads, re-encoded as 16-bit WAV (every browser plays WAV)."""
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + _b64(buf.getvalue())


def loss_curve_png(history: list[dict[str, float]]) -> str | None:
    """The training loss against the step as a base64 PNG data URI (None when there is no history)."""
    rows = [r for r in history if "loss" in r and "step" in r]
    if not rows:
        return None
    from xmodal.errors import require_module

    matplotlib = require_module("matplotlib", extra="report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color="#3b6ea8", lw=1.8)
    ax.set_xlabel("step")
    ax.set_ylabel("mean pairwise InfoNCE")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + _b64(buf.getvalue())


def write_metrics_json(path: Path, trained: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]],
                       info: dict[str, Any]) -> Path:
    """``{"pairs": {"image->audio": {"model": {...}, "random": {...}}, ...}, **info}``."""
    doc = {"pairs": {p: {"model": trained[p], "random": baseline[p]} for p in trained}, **info}
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def _cell(modality: str, item: Item, mark: str = "", audio_cache: dict[Path, str] | None = None) -> str:
    if modality == "image":
        body = f'<img src="{image_data_uri(item.image)}" width="64" height="64" alt="{html.escape(item.caption)}">'
    elif modality == "audio":
        cache = audio_cache if audio_cache is not None else {}
        if item.audio not in cache:
            cache[item.audio] = audio_data_uri(item.audio)
        body = f'<audio controls preload="none" src="{cache[item.audio]}"></audio>'
    else:
        body = f'<span class="cap">{html.escape(item.caption)}</span>'
    return f'<td class="{mark}">{body}<div class="id">{html.escape(item.id)}</div></td>'


def retrieval_grid(items: list[Item], embeddings: dict[str, torch.Tensor], queries: list[int], k: int = 5) -> str:
    """HTML tables, one per pair in :data:`GRID_PAIRS`: each query row, then its top-``k`` items (the ground
    truth is marked ``hit``), then the ground truth's rank."""
    from xmodal.metrics.retrieval import cosine_similarity_matrix, retrieval_ranks

    audio_cache: dict[Path, str] = {}
    parts = []
    for q, g in GRID_PAIRS:
        sim = cosine_similarity_matrix(embeddings[q], embeddings[g])  # (n, n)
        ranks = retrieval_ranks(sim)
        head = "".join(f"<th>top {j + 1}</th>" for j in range(k))
        rows = []
        for i in queries:
            top = torch.argsort(sim[i], descending=True, stable=True)[:k].tolist()
            cells = [_cell(q, items[i], "query", audio_cache)]
            cells += [_cell(g, items[j], "hit" if j == i else "", audio_cache) for j in top]
            rows.append(f"<tr>{''.join(cells)}<td class='rank'>{int(ranks[i]) + 1}</td></tr>")
        parts.append(f"<h3>{q} &rarr; {g}</h3><table class='grid'><tr><th>query ({q})</th>{head}"
                     f"<th>rank of truth</th></tr>{''.join(rows)}</table>")
    return "\n".join(parts)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: center; vertical-align: middle; }
td.query { background: #eef3fb; }
td.hit { background: #dff3df; outline: 3px solid #2e9b2e; outline-offset: -3px; }
td .id { font-size: 10px; color: #888; }
.cap { display: inline-block; max-width: 150px; font-size: 12px; }
audio { width: 150px; height: 32px; }
td.better { font-weight: bold; }
.rand { color: #999; }
"""


def metrics_table(trained: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> str:
    keys = ("R@1", "R@5", "R@10", "MedR", "MeanR")
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = []
    for pair, t in trained.items():
        b = baseline[pair]
        cells = "".join(f"<td>{t[k]:.1f} <span class='rand'>({b[k]:.1f})</span></td>" for k in keys)
        rows.append(f"<tr><td>{html.escape(pair)}</td>{cells}</tr>")
    return f"<table><tr><th>query &rarr; gallery</th>{head}</tr>{''.join(rows)}</table>"


def write_report_html(path: Path, *, title: str, trained: dict[str, dict[str, float]],
                      baseline: dict[str, dict[str, float]], history: list[dict[str, float]], items: list[Item],
                      embeddings: dict[str, torch.Tensor], info: dict[str, Any], n_queries: int = 6,
                      k: int = 5, seed: int = 0) -> Path:
    """Write the self-contained HTML report (see the module docstring)."""
    rng = np.random.default_rng(seed)
    queries = sorted(rng.choice(len(items), size=min(n_queries, len(items)), replace=False).tolist())
    curve = loss_curve_png(history)
    facts = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(v))}</td></tr>"
                    for key, v in info.items() if not isinstance(v, (dict, list)))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>Retrieval on held-out items (never seen in training): R@K in percent, median and mean rank (1 = best), ties
counted pessimistically. In grey, the random-embedding baseline.</p>
{metrics_table(trained, baseline)}
<h2>Training loss</h2>
{f'<img src="{curve}" alt="training loss">' if curve else '<p>no loss history</p>'}
<h2>Run</h2>
<table>{facts}</table>
<h2>Retrieval examples</h2>
<p>{len(queries)} random held-out queries; the ground truth is outlined in green when it is in the top {k}.</p>
{retrieval_grid(items, embeddings, queries, k)}
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
