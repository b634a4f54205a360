"""Logs, traces and a metrics port for the long-running commands that are not the API:
``recsys-lite worker`` and ``recsys-lite stream-ingest`` (the API's own is
``serving/instrumentation.py``)."""

from __future__ import annotations

from pathlib import Path

from recsys_lite.config import Settings
from recsys_lite.data.ingest import EVENT_SUFFIXES
from recsys_lite.models.artifact import read_manifest
from recsys_lite.observability.logs import configure_logging
from recsys_lite.observability.metrics import (
    INGEST_METRICS,
    BacklogCollector,
    ModelAgeCollector,
    WorkerCollector,
    folder_backlog,
    process_registry,
    serve_metrics,
)
from recsys_lite.online.health import read_worker_health

TEXT_FORMAT = "%(asctime)s %(message)s"


def _common(settings: Settings) -> None:
    configure_logging(settings, TEXT_FORMAT)
    if settings.tracing:
        from recsys_lite.observability.tracing import enable_tracing
        from recsys_lite.online.tracing import instrument_online

        enable_tracing(settings, instrument_online)


def observe_worker(
    settings: Settings, model_dir: Path, db_path: Path, metrics_port: int, metrics_host: str
) -> None:
    _common(settings)
    if not metrics_port:
        return
    # where run_worker reports its cycles: beside the store it is given
    status = db_path.parent / settings.worker_status_file.name
    inbox = settings.inbox_dir or db_path.parent / "inbox"
    registry = process_registry(
        WorkerCollector(lambda: read_worker_health(status)),
        ModelAgeCollector(lambda: read_manifest(model_dir)),
        BacklogCollector(lambda: folder_backlog(inbox, EVENT_SUFFIXES)),
        *INGEST_METRICS,
    )
    serve_metrics(registry, metrics_port, metrics_host)


def observe_stream_ingest(
    settings: Settings, folder: Path, metrics_port: int, metrics_host: str
) -> None:
    _common(settings)
    if not metrics_port:
        return
    registry = process_registry(
        BacklogCollector(lambda: folder_backlog(folder, EVENT_SUFFIXES)), *INGEST_METRICS
    )
    serve_metrics(registry, metrics_port, metrics_host)
