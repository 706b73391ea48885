"""``xmodal modalities``: the table of modality specs and the encoder family each one's nature implies."""

from __future__ import annotations


def modalities() -> None:
    """Print every modality: family, nature, axes, rate and default encoder, with the reason for it."""
    from rich.console import Console
    from rich.table import Table

    from xmodal.modalities import list_modalities

    table = Table(title="xmodal modalities", show_lines=False)
    for col in ("name", "family", "nature", "axes", "rate", "encoder", "why"):
        table.add_column(col, overflow="fold")
    for spec in list_modalities():
        axes = ", ".join(spec.axes) if spec.axes else "str"
        rate = f"{spec.rate:g} {spec.rate_unit}" if spec.rate is not None else "-"
        table.add_row(spec.name, spec.family, spec.nature, axes, rate, spec.default_encoder, spec.rationale)
    Console().print(table)
