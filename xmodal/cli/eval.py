"""``xmodal eval ...``: one module per family of metrics, each adding its commands to ``eval_app``."""

from __future__ import annotations

import typer

eval_app = typer.Typer(help="Evaluate predictions or generated media with the field's standard metrics.",
                       no_args_is_help=True)

# Imported for their side effect of registering commands on eval_app.
from xmodal.cli import eval_audio, eval_av, eval_music, eval_text, eval_vision, eval_vl  # noqa: E402,F401
