"""Prometheus metrics and the ASGI middleware that records them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_lite.observability.metrics import worker_failures
from recsys_lite.online.health import read_worker_health

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerHealthCollector(Collector):
    """The worker's counters as it last reported them (its status file), scraped with the API's
    metrics: the worker has no HTTP port of its own."""

    def __init__(self, read: Callable[[], dict[str, Any] | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        yield from worker_failures(self.read() or {})


DIVERSITY_SAMPLE = 4
DIVERSITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)


class Telemetry:
    def __init__(self, endpoints: set[str], worker_status: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        if worker_status is not None:
            self.registry.register(WorkerHealthCollector(lambda: read_worker_health(worker_status)))
        self.endpoints = endpoints
        self.requests = Counter(
            "recsys_requests", "HTTP requests", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "recsys_request_latency_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.served = Counter(
            "recsys_recommendations_served",
            "Items returned in recommendation lists",
            ["endpoint", "source"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks",
            "Answers given by the popular fallback",
            ["reason"],
            registry=self.registry,
        )
        self.errors = Counter(
            "recsys_errors", "Error answers", ["endpoint", "error"], registry=self.registry
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "The served model",
            ["model_type", "created_at"],
            registry=self.registry,
        )

        self.diversity = Histogram(
            "recsys_intra_list_diversity",
            "Intra-list diversity of served lists (one list in DIVERSITY_SAMPLE): share of"
            " distinct categories, mean pairwise cosine distance of item vectors",
            ["endpoint", "measure"],
            buckets=DIVERSITY_BUCKETS,
            registry=self.registry,
        )
        self._diversity_by: dict[tuple[str, str], Any] = {}
        self._lists = 0

        self._served_by: dict[tuple[str, str], Any] = {}
        # bounded: endpoint labels are ENDPOINTS plus "other", statuses are HTTP's
        self._latency_by: dict[str, Any] = {}
        self._requests_by: dict[tuple[str, int], Any] = {}

    def count_request(self, path: str, status: int, seconds: float) -> None:
        endpoint = self.endpoint_label(path)
        latency = self._latency_by.get(endpoint)
        if latency is None:
            latency = self._latency_by[endpoint] = self.latency.labels(endpoint)
        latency.observe(seconds)
        requests = self._requests_by.get((endpoint, status))
        if requests is None:
            requests = self._requests_by[endpoint, status] = self.requests.labels(
                endpoint, str(status)
            )
        requests.inc()

    def count_served(self, endpoint: str, source: str, items: int) -> None:
        """Items answered; the labelled child is looked up once (``labels`` takes a lock and
        builds a key on every call, on the hottest path)."""
        key = (endpoint, source)
        child = self._served_by.get(key)
        if child is None:
            child = self._served_by[key] = self.served.labels(endpoint, source)
        child.inc(items)

    def diversity_due(self) -> bool:
        """Whether to measure this list: one in DIVERSITY_SAMPLE, since the measure costs about
        a tenth of a plain answer and the histogram's shape needs no more."""
        self._lists += 1
        return self._lists % DIVERSITY_SAMPLE == 0

    def observe_diversity(self, endpoint: str, measures: dict[str, float | None]) -> None:
        for measure, value in measures.items():
            if value is None:
                continue
            key = (endpoint, measure)
            child = self._diversity_by.get(key)
            if child is None:
                child = self._diversity_by[key] = self.diversity.labels(endpoint, measure)
            child.observe(value)

    def endpoint_label(self, path: str) -> str:
        # unknown paths share one label so a scan cannot blow up the series count
        return path if path in self.endpoints else "other"


class TelemetryMiddleware:
    """Pure ASGI (no per-request task or body buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.telemetry.count_request(
                scope["path"], status["code"], time.perf_counter() - started
            )
