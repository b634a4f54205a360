"""What ``train --engine --source`` resolves to: how models are built, and the events."""

from __future__ import annotations

import pyarrow as pa

from recsys_lite.config import Settings
from recsys_lite.data import archive
from recsys_lite.engines.spark import ModelFactory, model_factory, read_archive
from recsys_lite.errors import InvalidInputError

SOURCES = ("store", "archive")


def training_inputs(
    engine: str, master: str, source: str, settings: Settings
) -> tuple[ModelFactory, pa.Table | None]:
    """The model factory for ``engine`` and the events to train on (None: the store's)."""
    factory = model_factory(engine, master)
    if source == "store":
        return factory, None
    if source != "archive":
        raise InvalidInputError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
    if settings.event_archive is None:
        raise InvalidInputError("--source archive needs EVENT_ARCHIVE (the archive's folder)")
    if engine == "spark":
        return factory, read_archive(settings.event_archive, master)
    return factory, archive.read_events(settings.event_archive).drop_columns(["seq"])
