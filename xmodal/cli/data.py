"""``xmodal data list|info|verify``: registered dataset builders, dataset statistics, full decode checks."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="List, describe and verify datasets.", no_args_is_help=True)


@data_app.command("list")
def list_cmd() -> None:
    """List the registered dataset builders."""
    from rich.console import Console
    from rich.table import Table

    from xmodal.data.registry import list_builders

    table = Table(title="dataset builders")
    table.add_column("name")
    table.add_column("description", overflow="fold")
    for b in list_builders():
        table.add_row(b.name, b.description)
    Console().print(table)


@data_app.command("info")
def info_cmd(root: Path = typer.Argument(..., help="dataset directory (dataset.json + manifest.jsonl)"),
             json_out: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
             allow_outside: bool = typer.Option(False, "--allow-outside",
                                                help="read files the manifest names outside the dataset folder")
             ) -> None:
    """Show counts per split, labels and per-field statistics of a dataset."""
    import json

    from rich.console import Console
    from rich.table import Table

    from xmodal.data.manifest import info

    stats = info(root, allow_outside=allow_outside)
    console = Console()
    if json_out:
        console.print_json(json.dumps(stats))
        return
    console.print(f"[bold]{stats['name']}[/]: {stats['description']}  ({stats['samples']} samples)")
    console.print("splits: " + ", ".join(f"{k}={v}" for k, v in stats["splits"].items()))
    table = Table(title="fields")
    for col in ("field", "modality", "present", "statistics"):
        table.add_column(col, overflow="fold")
    for fld, s in stats["fields"].items():
        detail = "; ".join(f"{k}: " + (", ".join(f"{a}={b:.4g}" for a, b in v.items()) if isinstance(v, dict)
                                       else str(v)) for k, v in s.items() if k not in ("modality", "present"))
        table.add_row(fld, s["modality"], str(s["present"]), detail)
    console.print(table)


@data_app.command("verify")
def verify_cmd(root: Path = typer.Argument(..., help="dataset directory (dataset.json + manifest.jsonl)"),
               allow_outside: bool = typer.Option(False, "--allow-outside",
                                                  help="read files the manifest names outside the dataset folder")
               ) -> None:
    """Decode every file of a dataset; list each bad item. Exit code 1 when any item is bad."""
    from rich.console import Console
    from rich.table import Table

    from xmodal.data.manifest import verify

    report = verify(root, progress=True, allow_outside=allow_outside)
    console = Console()
    if report.ok:
        console.print(f"[green]ok[/]: {report.samples} samples, {report.fields_checked} fields decoded")
        return
    table = Table(title=f"{len(report.bad)} bad items in {root}")
    for col in ("id", "field", "error", "message"):
        table.add_column(col, overflow="fold")
    for b in report.bad:
        table.add_row(b.id, b.field, b.error, b.message)
    console.print(table)
    raise typer.Exit(code=1)
