"""``adf connectors``: what connector and runtime types this installation provides."""

from __future__ import annotations

import click
from rich.table import Table

from active_data_flow.cli._render import console
from active_data_flow.registry import available_connectors, available_runtimes

__all__ = ["connectors"]


@click.command()
def connectors() -> None:
    """List the connector and runtime type names that specs may use."""
    table = Table(title="Registered types", title_justify="left")
    table.add_column("kind")
    table.add_column("type names")
    table.add_row("sources", ", ".join(available_connectors("source")))
    table.add_row("sinks", ", ".join(available_connectors("sink")))
    table.add_row("runtimes", ", ".join(available_runtimes()))
    console.print(table)
