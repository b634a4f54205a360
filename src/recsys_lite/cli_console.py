"""What the `recsys-lite` commands print on: the consoles, errors and tables of metrics."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recsys_lite.errors import InvalidInputError, RecsysError

console = Console(stderr=True)
# Piped output gets a fixed, wide layout instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=140)


def fail(exc: RecsysError) -> None:
    """Print the error and exit: 2 for invalid input, 1 for anything else."""
    console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2 if isinstance(exc, InvalidInputError) else 1)


def metrics_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    return table
