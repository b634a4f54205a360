"""What the API process adds to its own metrics, logs and traces (``serving/app.py`` calls
``instrument_app`` once the app's own middleware is in place)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from recsys_lite.config import Settings
from recsys_lite.observability.logs import RequestContextMiddleware
from recsys_lite.observability.metrics import (
    INGEST_METRICS,
    ONLINE_METRICS,
    BacklogCollector,
    ModelAgeCollector,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from recsys_lite.serving.runtime import Runtime


def instrument_app(
    app: FastAPI, settings: Settings, registry: CollectorRegistry, runtime: Runtime
) -> None:
    registry.register(ModelAgeCollector(lambda: runtime.state.artifact.manifest))
    registry.register(BacklogCollector(runtime.bus_report))
    for metric in (*ONLINE_METRICS, *INGEST_METRICS):  # the API drains its inbox too
        registry.register(metric)
    # added last, so outermost: the request id is set before the span starts, and both cover
    # every other middleware
    if settings.tracing:
        from recsys_lite.observability.tracing import TracingMiddleware

        enable_api_tracing(settings)
        app.add_middleware(TracingMiddleware)
    if settings.log_format == "json" or settings.tracing:
        app.add_middleware(RequestContextMiddleware, slow_seconds=settings.slow_request_seconds)


def enable_api_tracing(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider:
    """Tracing in the API process: every process's spans and the API's ranking."""
    from recsys_lite.observability.tracing import enable_tracing

    return enable_tracing(settings, _instrument_api, exporter)


def _instrument_api() -> None:
    from recsys_lite.observability.tracing import patch, spanned
    from recsys_lite.online.tracing import instrument_online
    from recsys_lite.serving import lists

    instrument_online()
    patch(lists, "rerank", spanned("ranking"))
