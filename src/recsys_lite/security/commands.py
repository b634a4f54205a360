"""``recsys-lite keys``: make and list API keys without ever storing a secret."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from recsys_lite.config import get_settings
from recsys_lite.errors import RecsysError
from recsys_lite.security.keys import SCOPES, KeyRing, append_key

keys_app = typer.Typer(help="API keys: add one to the keys file, list them.", no_args_is_help=True)
console = Console(stderr=True)
out = Console()

FileOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--file", help="the TOML keys file (default: $API_KEYS_FILE)"),
]


def _file(file: Path | None) -> Path:
    chosen = file or get_settings().api_keys_file
    if chosen is None:
        console.print("[bold red]error:[/] give --file or set API_KEYS_FILE")
        raise typer.Exit(code=2)
    return chosen


@keys_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="who uses the key, e.g. storefront")],
    scopes: Annotated[
        str, typer.Option(help=f"comma-separated: {', '.join(SCOPES)} or *")
    ] = "events,catalog",
    file: FileOption = None,
) -> None:
    """Create a key: its SHA-256 goes into the file, the secret is printed once."""
    path = _file(file)
    try:
        secret = append_key(path, name, [s for s in scopes.split(",") if s.strip()])
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}")
        raise typer.Exit(code=2) from None
    console.print(f"added key {name!r} to {path}; the secret below is not stored anywhere:")
    print(secret)


@keys_app.command("list")
def list_keys(file: FileOption = None) -> None:
    """Every configured key (environment and file): name and scopes, never secrets."""
    try:
        ring = KeyRing.from_settings(get_settings(), file)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {exc.message}")
        raise typer.Exit(code=2) from None
    table = Table("name", "scopes", "sha256 (first 12)")
    for key in ring.keys:
        table.add_row(key.name, ", ".join(s for s in SCOPES if s in key.scopes), key.sha256[:12])
    out.print(table)
