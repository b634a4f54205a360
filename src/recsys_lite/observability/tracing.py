"""OpenTelemetry tracing, off by default (``TRACING=true`` turns it on; needs the ``tracing``
extra).

Off, nothing here runs: no tracer, no wrapper, no middleware, so requests cost what they cost
without it. On, ``enable_tracing`` wraps the few functions worth a span, the way
OpenTelemetry's own instrumentations patch libraries:

* ``retrieval``: a model's top-k for a user, a history or an item, and the popular fallback;
* ``ranking``: the re-ranking of the retrieved pool (diversity, per-category caps);
* ``store``: each unit of work on the DuckDB store;
* ``bus``: publishing, and polls or consumes that brought messages (empty polls, ten a second,
  would drown the rest).

This module holds only the machinery and the kinds of span; which functions get them is said
by the layer that owns them, passed in as ``instrument``: ``online/tracing.py`` for every
process (retrieval, store, bus), ``serving/instrumentation.py`` adding the API's ranking.

Each API request is a server span named by its method and route template. Spans carry no
shopper or item ids, keys, paths or query strings.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_lite.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_patched: list[tuple[Any, str, Any]] = []


def tracer() -> Tracer | None:
    return _tracer


def enable_tracing(
    settings: Settings, instrument: Callable[[], None], exporter: SpanExporter | None = None
) -> TracerProvider:
    """Set up the tracer and wrap the traced functions (``instrument`` wraps them with
    ``patch``), once per process. ``exporter``: where spans go (tests pass an in-memory one);
    otherwise ``TRACING_EXPORTER``."""
    global _provider, _tracer
    if _provider is not None:
        return _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        # batches leave from a background thread, off the request path
        provider.add_span_processor(BatchSpanProcessor(_configured_exporter(settings)))
    _provider, _tracer = provider, provider.get_tracer("recsys_lite")
    instrument()
    return provider


def disable_tracing() -> None:
    """Undo ``enable_tracing``: the original functions back, spans flushed."""
    global _provider, _tracer
    for owner, name, original in reversed(_patched):
        setattr(owner, name, original)
    _patched.clear()
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def _configured_exporter(settings: Settings) -> SpanExporter:
    if settings.tracing_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    # the endpoint and headers come from the standard OTEL_EXPORTER_OTLP_* variables
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def patch(owner: Any, name: str, wrapper: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``wrapper(original)``; ``disable_tracing`` puts it back."""
    original = owner.__dict__[name]
    _patched.append((owner, name, original))
    setattr(owner, name, wrapper(original))


def spanned(span: str, **attributes: str) -> Callable[[Any], Any]:
    def wrap(function: Any) -> Any:
        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            assert _tracer is not None
            with _tracer.start_as_current_span(span, attributes=attributes):
                return function(*args, **kwargs)

        return traced

    return wrap


def retrieval_span(method: str) -> Callable[[Any], Any]:
    def wrap(function: Any) -> Any:
        @functools.wraps(function)
        def traced(self: Any, *args: Any, **kwargs: Any) -> Any:
            assert _tracer is not None
            attributes = {"recsys.method": method, "recsys.model": str(getattr(self, "name", ""))}
            with _tracer.start_as_current_span("retrieval", attributes=attributes):
                return function(self, *args, **kwargs)

        return traced

    return wrap


def store_span(function: Any) -> Any:
    @contextmanager
    @functools.wraps(function)
    def traced(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        assert _tracer is not None
        attributes: dict[str, str | bool] = {
            "db.system": "duckdb", "recsys.read_only": bool(kwargs.get("read_only")),
        }  # fmt: skip
        with (
            _tracer.start_as_current_span("store", attributes=attributes),
            function(self, *args, **kwargs) as connection,
        ):
            yield connection

    return traced


def bus_span(kind: str, operation: str, only_when_found: bool) -> Callable[[Any], Any]:
    def wrap(function: Any) -> Any:
        @functools.wraps(function)
        def traced(*args: Any, **kwargs: Any) -> Any:
            assert _tracer is not None
            attributes = {"messaging.system": kind, "messaging.operation": operation}
            if not only_when_found:
                with _tracer.start_as_current_span("bus", attributes=attributes):
                    return function(*args, **kwargs)
            started = time.time_ns()
            messages = function(*args, **kwargs)
            if messages:
                span = _tracer.start_span("bus", attributes=attributes, start_time=started)
                span.set_attribute("messaging.batch.message_count", len(messages))
                span.end()
            return messages

        return traced

    return wrap


class TracingMiddleware:
    """One server span per request, continuing the caller's trace (W3C ``traceparent``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        from recsys_lite.observability.logs import REQUEST_ID

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with _tracer.start_as_current_span(
            method, context=propagate.extract(carrier), kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:  # fmt: skip
            request_id = REQUEST_ID.get()
            if request_id is not None:
                span.set_attribute("recsys.request_id", request_id)

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route is not None:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")
