"""``xmodal data list|info|verify``. Placeholder; the foundation issue fills it in."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="List, describe and verify datasets.", no_args_is_help=True)
