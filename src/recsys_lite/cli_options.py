"""Options every `recsys-lite` command spells the same way (defaults come from the settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_lite.config import get_settings

DbOption = Annotated[
    Optional[Path], typer.Option("--db", help="DuckDB store (default: $DB_PATH)")  # noqa: UP045
]
ModelDirOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--model-dir", help="served artifact (default: $MODEL_DIR)"),
]


def db_path(db: Path | None) -> Path:
    """The store a command works on: ``--db``, else the configured DB_PATH."""
    return db or get_settings().db_path
