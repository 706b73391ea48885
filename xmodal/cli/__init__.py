"""The ``xmodal`` command. Each sub-command lives in its own module and imports heavy libraries lazily,
so ``xmodal --help`` stays fast."""

from __future__ import annotations

import typer

from xmodal.cli.data import data_app
from xmodal.cli.eval import eval_app
from xmodal.cli.main_commands import register_main_commands

app = typer.Typer(
    name="xmodal",
    help="Vision + X multimodal learning: data, models, training and evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
register_main_commands(app)
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")


def main() -> None:
    from rich.console import Console

    from xmodal.errors import XmodalError

    try:
        app()
    except XmodalError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {type(exc).__name__}: {exc}")
        raise SystemExit(2) from exc
