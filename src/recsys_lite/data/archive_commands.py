"""``recsys-lite archive``: the event archive's upkeep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from recsys_lite.config import get_settings
from recsys_lite.errors import RecsysError

archive_app = typer.Typer(
    help="The event archive (EVENT_ARCHIVE): a Delta Lake table of every accepted event.",
    no_args_is_help=True,
)
console = Console(stderr=True)
out = Console()

PathOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--path", help="the archive's folder (default: $EVENT_ARCHIVE)"),
]


@archive_app.command("compact")
def compact(path: PathOption = None) -> None:
    """Rewrite the archive's small files into large ones, day by day, and delete the old ones."""
    from recsys_lite.data import archive

    folder = path or get_settings().event_archive
    if folder is None:
        console.print("[bold red]error:[/] no archive: set EVENT_ARCHIVE or pass --path")
        raise typer.Exit(code=2)
    if not archive.exists(folder):
        console.print(f"[bold red]error:[/] {folder} holds no event archive")
        raise typer.Exit(code=1)
    try:
        report = archive.compact(folder)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(code=1) from exc
    out.print(
        f"{folder}: {report.files_before} files compacted into {report.files_after};"
        f" {report.files_removed} replaced files deleted"
    )
