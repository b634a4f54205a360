"""The progress bar a model shows while it trains."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import Progress, TaskID


@contextmanager
def training_progress(model: str, total: int, show: bool) -> Iterator[tuple[Progress, TaskID]]:
    """A bar "training MODEL" of ``total`` steps, and its task; it leaves no trace on the
    terminal when done, and shows nothing unless ``show``."""
    with Progress(disable=not show, transient=True) as progress:
        yield progress, progress.add_task(f"training {model}", total=total)
