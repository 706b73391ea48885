"""``xmodal data list|build|info|verify``: registered dataset builders, building one, dataset statistics, full
decode checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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


@data_app.command("build")
def build_cmd(name: Annotated[str, typer.Argument(help="a builder shown by `xmodal data list`, e.g. ave-scenes")],
              out: Annotated[Path, typer.Option("--out", help="directory to write the dataset into")],
              n: Annotated[int, typer.Option("--n", help="clips in all splits together")] = 100,
              seed: Annotated[int, typer.Option("--seed", help="the build is a pure function of the seed")] = 0,
              workers: Annotated[int, typer.Option("--workers", help="processes rendering clips at once")] = 1,
              layout: Annotated[str | None, typer.Option("--layout", help="the official layout where a builder "
                                                         "writes several, e.g. hc-stvg-scenes: v1 or v2")] = None,
              test_n: Annotated[int | None, typer.Option("--test-n", help="clips in the test split (retrieval "
                                                         "galleries), apart from --n")] = None,
              option: Annotated[list[str] | None, typer.Option("--option", "-o", help="a builder option KEY=VALUE "
                                                               "(YAML value), e.g. size=64; repeatable")] = None
              ) -> None:
    """Build a registered dataset into --out (scene builders: MP4s, official annotation files, a card)."""
    import sys
    import time

    import yaml

    from xmodal.data.registry import get_builder
    from xmodal.errors import ConfigError

    extra: dict[str, object] = {} if test_n is None else {"test_n": test_n}
    if layout is not None:
        extra["layout"] = layout
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE")
        extra[key.strip().replace("-", "_")] = yaml.safe_load(value)
    builder = get_builder(name)
    start = time.perf_counter()
    path = builder.build(out, n=n, seed=seed, workers=workers, **extra)
    # with --test-n, what --n counts is the builder's (the splits other than test): say both as given
    count = f"{n} clips" if test_n is None else f"--n {n} --test-n {test_n}"
    print(f"{name}: {count} in {time.perf_counter() - start:.1f} s -> {path}", file=sys.stderr)


@data_app.command("info")
def info_cmd(root: Annotated[Path, typer.Argument(help="dataset directory (dataset.json + manifest.jsonl)")],
             json_out: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
             allow_outside: Annotated[bool, typer.Option("--allow-outside",
                                     help="read files the manifest names outside the dataset folder")] = False) -> None:
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
def verify_cmd(root: Annotated[Path, typer.Argument(help="dataset directory (dataset.json + manifest.jsonl)")],
               allow_outside: Annotated[bool, typer.Option("--allow-outside",
                                     help="read files the manifest names outside the dataset folder")] = False
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


@data_app.command("shard")
def shard_cmd(
    source: Annotated[Path, typer.Argument(help="a dataset directory (dataset.json + manifest.jsonl), or a "
                                           "table / folder that `xmodal plan` reads")],
    out: Annotated[Path, typer.Option("--out", help="folder for the shards and index.json")],
    shard_size: Annotated[int, typer.Option("--shard-size", help="samples per shard")] = 1000,
    target: Annotated[str | None, typer.Option("--target", help="table column stored as each sample's "
                                               "label")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="transform cache (default "
                                                   "$XMODAL_CACHE/features)")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not read or fill the transform "
                                           "cache")] = False,
    split: Annotated[str | None, typer.Option("--split", help="a manifest's split to shard (transforms are "
                                              "fitted on its training split either way)")] = None,
) -> None:
    """Write WebDataset tar shards of the transformed samples (text kept as text)."""
    from xmodal.data.shards import source_from, write_shards
    from xmodal.transforms import TransformCache

    index = write_shards(source_from(source, target, split), out, shard_size,
                         cache=None if no_cache else TransformCache(cache_dir))
    typer.echo(f"{index['samples']} samples in {len(index['shards'])} shards under {out} "
               f"(fields: {', '.join(f'{k}={v}' for k, v in index['fields'].items())})")
