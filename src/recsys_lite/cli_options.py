"""Options every `recsys-lite` command spells the same way (defaults come from the settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DbOption = Annotated[
    Optional[Path], typer.Option("--db", help="DuckDB store (default: $DB_PATH)")  # noqa: UP045
]
ModelDirOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--model-dir", help="served artifact (default: $MODEL_DIR)"),
]
