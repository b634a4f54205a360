"""``recsys-lite rollback``: serve the previous artifact version again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from recsys_lite.config import get_settings
from recsys_lite.errors import RecsysError

console = Console(stderr=True)
out = Console()


def rollback(
    model_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--model-dir", help="served artifact (default: $MODEL_DIR)"),
    ] = None,
) -> None:
    """Serve the version before the current one; running servers swap it in."""
    from recsys_lite.models.artifact import load_artifact
    from recsys_lite.models.versions import previous_version, switch_to, versions_folder

    served = model_dir or get_settings().model_dir
    try:
        previous, restored = previous_version(served)
        # a version that no longer loads is never served, not even for a moment
        manifest = load_artifact(versions_folder(served) / restored).manifest
        switch_to(served, restored)
    except RecsysError as exc:
        console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
    out.print(
        f"{served} now serves {restored} ({manifest['model_type']}, created"
        f" {manifest['created_at']}) instead of {previous}",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
