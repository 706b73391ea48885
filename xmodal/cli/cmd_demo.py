"""``xmodal demo``: build the tri-modal emoji/speech dataset (cached), align image, audio and text with a
contrastive model, evaluate retrieval on held-out emoji against a random baseline, write a report."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import typer

# Package data (``xmodal/recipes`` links to the repository's ``recipes/``; the wheel holds copies), so the demo
# finds its recipe after a plain ``pip install`` as well as in a source checkout.
DEFAULT_RECIPE = Path(str(files("xmodal") / "recipes" / "demo_trimodal.yaml"))


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Directory for metrics.json, report.html, logs."),
    recipe: Path = typer.Option(DEFAULT_RECIPE, "--recipe", help="The demo recipe (task trimodal_retrieval)."),
    data_root: Path | None = typer.Option(None, "--data-root",
                                             help="Dataset cache (default $XMODAL_DATA or ~/.cache/xmodal)."),
    steps: int | None = typer.Option(None, "--steps", help="Override train.max_steps."),
    max_groups: int | None = typer.Option(None, "--max-groups",
                                             help="Build only this many emoji groups (quick runs)."),
    overrides: list[str] = typer.Option([], "--set", help="Recipe override key.sub=value (repeatable)."),
) -> None:
    """Train and evaluate the tri-modal (image/audio/text) retrieval demo end to end."""
    import json
    import time

    import torch
    from rich.console import Console
    from rich.table import Table

    from xmodal.metrics.retrieval import random_baseline
    from xmodal.report.retrieval import Item, write_metrics_json, write_report_html
    from xmodal.tasks.trimodal_retrieval import TrimodalDataset, build, embed_all, retrieval_table
    from xmodal.train.config import load_recipe, train_config_from
    from xmodal.train.loop import train

    console = Console()
    t_start = time.perf_counter()
    extra = list(overrides)
    if data_root is not None:
        extra.append(f"data.root={data_root}")
    if steps is not None:
        extra.append(f"train.max_steps={steps}")
    if max_groups is not None:
        extra.append(f"data.options.max_groups={max_groups}")
    cfg = load_recipe(recipe, extra)
    cfg.setdefault("train", {})["evaluate"] = False  # evaluated below, with the embeddings the report needs
    tc = train_config_from(cfg)
    out.mkdir(parents=True, exist_ok=True)

    console.rule("[bold]xmodal demo: image / audio / text alignment on emoji_speech")
    torch.manual_seed(tc.seed)  # model init (the trainer reseeds for training)
    bundle = build(cfg)
    t_data = time.perf_counter() - t_start
    train_set, test_set = bundle.train_set, bundle.val_set
    assert isinstance(train_set, TrimodalDataset) and isinstance(test_set, TrimodalDataset)  # the task's views
    console.print(f"data ready in {t_data:.1f} s: {len(train_set)} train / {len(test_set)} held-out items "
                  f"({train_set.items.root})")

    result = train(bundle, cfg, out_dir=out / "train")
    model = bundle.model.cpu().eval()

    t_eval = time.perf_counter()
    embeddings = embed_all(model, test_set)
    trained = retrieval_table(embeddings)
    n = len(test_set)
    baseline = {pair: random_baseline(n, dim=embeddings["image"].shape[1], seed=s)
                for s, pair in enumerate(trained)}
    data = train_set.items
    items = [Item(data.ids[i], data.captions[i], data.root / data.image_paths[i], data.root / data.audio_paths[i])
             for i in test_set.indices]
    info = {
        "dataset": str(data.root), "train_items": len(train_set), "test_items": n,
        "voices": data.voices, "steps": result.steps, "epochs": round(result.epochs, 2),
        "batch_size": tc.batch_size, "final_loss": result.final_loss,
        "train_seconds": round(result.train_seconds, 1), "samples_per_second": round(result.samples_per_second, 1),
        "data_seconds": round(t_data, 1), "torch_threads": torch.get_num_threads(),
    }
    write_metrics_json(out / "metrics.json", trained, baseline, {**info, "recipe": cfg})
    info["total_seconds"] = round(time.perf_counter() - t_start, 1)
    write_report_html(out / "report.html", title="xmodal demo: tri-modal retrieval on held-out emoji",
                      trained=trained, baseline=baseline, history=result.history, items=items,
                      embeddings=embeddings, info=info)
    total = time.perf_counter() - t_start
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    doc["total_seconds"] = round(total, 1)
    doc["eval_report_seconds"] = round(time.perf_counter() - t_eval, 1)
    (out / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    table = Table(title=f"Held-out retrieval ({n} items; random baseline in brackets)")
    for col in ("query -> gallery", "R@1", "R@5", "R@10", "MedR"):
        table.add_column(col, justify="right")
    for pair, row in trained.items():
        b = baseline[pair]
        table.add_row(pair, *(f"{row[k]:.1f} [dim]({b[k]:.1f})[/]" for k in ("R@1", "R@5", "R@10", "MedR")))
    console.print(table)
    console.print(f"train {result.train_seconds:.0f} s ({result.steps} steps), total {total:.0f} s. "
                  f"Report: {out / 'report.html'}  metrics: {out / 'metrics.json'}")
