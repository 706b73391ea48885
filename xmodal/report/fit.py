"""The report of ``xmodal fit``: ``metrics.json`` (the pipeline's schema), ``report.json`` (everything the HTML
shows) and a self-contained ``report.html`` (inline SVG charts, no external file or network).

It shows the data card (every column's inferred modality and reason, row counts, missing and unreadable
files), the plan, the learning curves of every run (training loss and the primary metric at each evaluation),
the fused model against the baselines (majority class / label prior / training mean, and each input alone),
for classification the confusion matrix and the calibration (reliability bins and ECE), and the parameters,
peak memory, throughput and the time spent against the budget.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import torch


def _card(plan: Any) -> list[dict[str, Any]]:
    rows = []
    for role, cols in (("input", plan.inputs), ("ignored", plan.ignored)):
        for name, t in cols.items():
            rows.append({"column": name, "role": role, "modality": t.modality, "encoder": t.encoder,
                         "reason": t.reason, "rows": t.rows, "missing": t.missing, "sampled": t.sampled,
                         "unreadable": [{"file": f, "error": e} for f, e in t.unreadable]})
    return rows


def _classification_extras(bundle: Any) -> dict[str, Any]:
    from xmodal.metrics.calibration import confusion_matrix, reliability
    from xmodal.tasks.pipeline import _targets, outputs_all

    out = outputs_all(bundle.model, bundle.val_set, bundle.collate)
    target = getattr(bundle.evaluate, "keywords", {}).get("target", "label")
    y = _targets(bundle.val_set, target)
    logits = out["logits"]
    return {"confusion_matrix": confusion_matrix(logits, y, logits.shape[1]),
            "calibration": reliability(logits.softmax(1), y)}


def write_report(out: Path, plan: Any, bundle: Any, runs: list[Any], *, budget: float, elapsed: float,
                 planning_seconds: float, peak_memory_mib: float) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.json`` and ``report.html`` into ``out``; returns the metrics document."""
    fused = runs[0]
    trained = out / "run" / "metrics.json"  # the trainer computed the task's baselines on the same split
    baselines = json.loads(trained.read_text(encoding="utf-8")).get("baselines", {}) if trained.exists() else {}
    if not baselines and bundle.baselines:
        baselines = {name: {k: float(v) for k, v in row.items()} for name, row in bundle.baselines(bundle.val_set).items()}
    for run in runs[1:]:
        baselines[run.name] = run.metrics
    doc = {"primary": bundle.primary, "model": fused.metrics, "baselines": baselines, "split": bundle.split,
           "n": len(bundle.val_set)}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    labels = bundle.artifacts.get("labels")
    extras = _classification_extras(bundle) if plan.head == "classifier" and plan.task != "multilabel" else {}
    report = {
        "data": {"source": plan.source, "layout": plan.layout, "rows": plan.rows, "train": len(bundle.train_set),
                 "held_out": len(bundle.val_set), "columns": _card(plan)},
        "plan": {**plan.to_json(), "task_reason": plan.task_reason, "classes": plan.classes},
        "metrics": doc, "labels": labels, **extras,
        "runs": [{"name": r.name, "fields": r.fields, "metrics": r.metrics, "steps": r.steps,
                  "planned_steps": r.planned_steps, "stopped": r.stopped, "train_seconds": r.seconds,
                  "samples_per_second": r.samples_per_second, "parameters": r.parameters, "phases_s": r.phases,
                  "eval_curve": r.curve, "loss_curve": [{"step": x.get("step"), "loss": x.get("loss")}
                                                        for x in r.loss]} for r in runs],
        "resources": {"parameters": fused.parameters, "peak_memory_mib": peak_memory_mib,
                      "samples_per_second": fused.samples_per_second,
                      "threads": torch.get_num_threads()},
        "time": {"budget_s": budget, "planning_s": planning_seconds, "report_started_s": elapsed},
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "report.html").write_text(_html(report), encoding="utf-8")
    return doc


# -------------------------------------------------------------------------------------------------- HTML
def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _svg_curve(points: list[tuple[float, float]], label: str, width: int = 360, height: int = 160) -> str:
    """A line chart of (x, y) points as inline SVG."""
    pts = [(float(x), float(y)) for x, y in points if x is not None and y is not None]
    if len(pts) < 2:
        return f"<p>{html.escape(label)}: fewer than two points</p>"
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 40) / ((x1 - x0) or 1)
    sy = (height - 30) / ((y1 - y0) or 1)
    line = " ".join(f"{30 + (x - x0) * sx:.1f},{height - 20 - (y - y0) * sy:.1f}" for x, y in pts)
    return (f'<svg width="{width}" height="{height}" role="img"><title>{html.escape(label)}</title>'
            f'<polyline fill="none" stroke="#36c" stroke-width="1.5" points="{line}"/>'
            f'<text x="30" y="12" font-size="11">{html.escape(label)}: {y0:.4g} .. {y1:.4g}</text>'
            f'<text x="30" y="{height - 4}" font-size="10">step {x0:g}</text>'
            f'<text x="{width - 70}" y="{height - 4}" font-size="10">step {x1:g}</text></svg>')


def _html(r: dict[str, Any]) -> str:
    primary = r["metrics"]["primary"]
    parts = [f"<h1>xmodal fit: {html.escape(str(r['data']['source']))}</h1>",
             "<h2>Data</h2>",
             (f"<p>{r['data']['rows']} rows ({r['data']['layout']}); {r['data']['train']} trained on, "
             f"{r['data']['held_out']} held out.</p>"),
             _table(["column", "role", "modality", "encoder", "rows", "missing", "unreadable", "reason"],
                    [[c["column"], c["role"], c["modality"], c["encoder"], c["rows"], c["missing"],
                      "; ".join(f"{u['file']}: {u['error']}" for u in c["unreadable"]) or 0, c["reason"]]
                     for c in r["data"]["columns"]]),
             "<h2>Plan</h2>",
             f"<p>task: {html.escape(r['plan']['task'])} — {html.escape(r['plan']['task_reason'])}</p>",
             f"<p>fusion: {r['plan']['fusion']}; head: {r['plan']['head']}; metric: {r['plan']['metric']}</p>",
             "<h2>Held-out results</h2>"]
    rows = [["fused model", *[r["metrics"]["model"].get(k) for k in sorted(r["metrics"]["model"])]]]
    keys = sorted(r["metrics"]["model"])
    rows += [[name, *[m.get(k) for k in keys]] for name, m in r["metrics"]["baselines"].items()]
    parts.append(_table(["", *keys], rows))
    parts.append(f"<p>primary metric: {html.escape(primary)}</p>")
    parts.append("<h2>Learning curves</h2>")
    for run in r["runs"]:
        stopped = f"; stopped: {run['stopped']}" if run["stopped"] else ""
        parts.append(f"<h3>{html.escape(run['name'])}</h3><p>{run['steps']} of {run['planned_steps']} planned "
                     f"steps in {run['train_seconds']:.1f} s, {run['samples_per_second']:.0f} samples/s, "
                     f"{run['parameters']} parameters{html.escape(stopped)}; wall seconds: "
                     + html.escape(", ".join(f"{k} {v:.1f}" for k, v in run["phases_s"].items())) + "</p>")
        parts.append(_svg_curve([(x["step"], x["loss"]) for x in run["loss_curve"]], "training loss"))
        parts.append(_svg_curve([(x["step"], x.get(primary)) for x in run["eval_curve"]], f"held-out {primary}"))
    if "confusion_matrix" in r:
        names = r["labels"] or [str(i) for i in range(len(r["confusion_matrix"]))]
        parts.append("<h2>Confusion matrix (rows: true, columns: predicted)</h2>")
        parts.append(_table(["", *names], [[n, *row] for n, row in zip(names, r["confusion_matrix"])]))
        cal = r["calibration"]
        parts.append(f"<h2>Calibration (ECE = {cal['ece']:.4f})</h2>")
        parts.append(_table(["confidence bin", "count", "mean confidence", "accuracy"],
                            [[f"({b['lower']:.1f}, {b['upper']:.1f}]", b["count"], b["confidence"], b["accuracy"]]
                             for b in cal["bins"]]))
    res, t = r["resources"], r["time"]
    parts.append("<h2>Resources</h2>")
    parts.append(f"<p>{res['parameters']} parameters; peak memory {res['peak_memory_mib']:.0f} MiB; "
                 f"{res['samples_per_second']:.0f} training samples/s on {res['threads']} threads; budget "
                 f"{t['budget_s']:g} s, planning {t['planning_s']:.1f} s, report started at {t['report_started_s']:.1f} s"
                 "</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" + \
        "\n".join(parts) + "</body></html>\n"
