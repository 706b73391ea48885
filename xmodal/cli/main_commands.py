"""Top-level commands: ``demo``, ``train``, ``predict``, ``generate``, ``modalities``. Each lives in its own module."""

from __future__ import annotations

import typer

from xmodal.cli import cmd_demo, cmd_generate, cmd_modalities, cmd_predict, cmd_train


def register_main_commands(app: typer.Typer) -> None:
    app.command("demo")(cmd_demo.demo)
    app.command("train")(cmd_train.train)
    app.command("predict")(cmd_predict.predict)
    app.command("generate")(cmd_generate.generate)
    app.command("modalities")(cmd_modalities.modalities)
    _register_plan(app)


def _register_plan(app: typer.Typer) -> None:
    from xmodal.cli import cmd_plan  # ``plan``: inferred column types and the model they imply

    app.command("plan")(cmd_plan.plan)
    from xmodal.cli import cmd_fit  # ``fit``: the plan trained and evaluated within a time budget

    app.command("fit")(cmd_fit.fit)
