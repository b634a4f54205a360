"""Prometheus metrics every process shares: the API (``/metrics``), the worker and stream-ingest
(each on its own ``--metrics-port``).

One name means one thing wherever it is exported; Prometheus' ``job`` label tells the processes
apart. Counters that code paths shared by several processes bump (``drain`` ingests for the
API, the worker and stream-ingest alike) live here at module level, unregistered: each process
registers them in the registry it exposes. Gauges that describe state (model age, files waiting,
the worker's last cycles) are read when scraped, so nothing on a request path keeps them.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

EVENTS_INGESTED = Counter(
    "recsys_events_ingested", "Events this process wrote into the store (new ones only)",
    registry=None,
)  # fmt: skip
FILES_INGESTED = Counter(
    "recsys_files_ingested", "Event and catalog files this process ingested", registry=None
)
FILES_REJECTED = Counter(
    "recsys_files_rejected", "Files refused as invalid (moved to rejected/)", registry=None
)
INGEST_LAG = Histogram(
    "recsys_ingest_lag_seconds",
    "From a file's last write (an API batch spooled, a file dropped in a watched folder) to its"
    " rows being in the store",
    buckets=LAG_BUCKETS,
    registry=None,
)
ONLINE_EVENTS = Counter(
    "recsys_online_events_applied",
    "Events folded into an API process's online state: from its own requests or from the bus",
    ["origin"],
    registry=None,
)
ONLINE_LAG = Histogram(
    "recsys_online_event_lag_seconds",
    "From a batch being durable in one API process to its being applied by another (the bus)",
    buckets=LAG_BUCKETS,
    registry=None,
)
# bound once: ``labels`` takes a lock and builds a key, and POST /events is a hot path
_FROM_REQUESTS = ONLINE_EVENTS.labels("request")
_FROM_BUS = ONLINE_EVENTS.labels("bus")

INGEST_METRICS = (EVENTS_INGESTED, FILES_INGESTED, FILES_REJECTED, INGEST_LAG)
ONLINE_METRICS = (ONLINE_EVENTS, ONLINE_LAG)


def observe_file_ingested(last_write: float, events: int) -> None:
    FILES_INGESTED.inc()
    EVENTS_INGESTED.inc(events)
    INGEST_LAG.observe(max(0.0, time.time() - last_write))


def observe_request_events(count: int) -> None:
    _FROM_REQUESTS.inc(count)


def observe_bus_batch(batch_id: str, count: int) -> None:
    """A batch from another process, named ``events-<ns stamp>-...`` when it became durable."""
    _FROM_BUS.inc(count)
    try:
        stamp = int(batch_id.split("-", 2)[1]) / 1e9
    except (IndexError, ValueError):  # not named by Inbox.write: no lag to tell
        return
    ONLINE_LAG.observe(max(0.0, time.time() - stamp))


def manifest_created_at(manifest: dict[str, Any]) -> float | None:
    created = manifest.get("created_at")
    if not created:
        return None
    try:
        return float(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


class ModelAgeCollector(Collector):
    """``recsys_model_age_seconds``: how long ago the served artifact was trained."""

    def __init__(self, manifest: Callable[[], dict[str, Any] | None]) -> None:
        self.manifest = manifest

    def collect(self) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "recsys_model_age_seconds", "Seconds since the served model was trained"
        )
        try:
            manifest = self.manifest()
        except Exception:  # an artifact being replaced: no sample this scrape
            manifest = None
        created = manifest_created_at(manifest) if manifest else None
        if created is not None:
            age.add_metric([], time.time() - created)
        yield age


def folder_backlog(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Any]:
    """Files waiting in a folder and the oldest one's age, as ``Runtime.bus_report`` counts."""
    now, count, oldest = time.time(), 0, None
    try:
        entries = list(folder.iterdir())
    except OSError:
        entries = []
    for path in entries:
        if path.name.startswith(".") or not path.name.lower().endswith(suffixes):
            continue
        try:
            modified = path.stat().st_mtime
        except OSError:
            continue
        count += 1
        oldest = modified if oldest is None else min(oldest, modified)
    return {
        "inbox_files_pending": count,
        "oldest_pending_seconds": None if oldest is None else now - oldest,
    }


class BacklogCollector(Collector):
    """The bus lag: batches spooled but not in the store yet, the oldest one's age, and (in an
    API process) how long since the bus last brought a message."""

    def __init__(self, report: Callable[[], dict[str, Any]]) -> None:
        self.report = report

    def collect(self) -> Iterator[Metric]:
        report = self.report()
        pending = GaugeMetricFamily(
            "recsys_bus_pending_files", "Event and catalog files spooled but not in the store yet"
        )
        pending.add_metric([], float(report.get("inbox_files_pending") or 0))
        yield pending
        oldest = GaugeMetricFamily(
            "recsys_bus_oldest_pending_seconds",
            "Age of the oldest file not in the store yet (0 when none waits)",
        )
        oldest.add_metric([], float(report.get("oldest_pending_seconds") or 0.0))
        yield oldest
        if "last_message_seconds_ago" in report:
            quiet = GaugeMetricFamily(
                "recsys_bus_last_message_age_seconds",
                "Seconds since this API process last received a batch from the bus",
            )
            if report["last_message_seconds_ago"] is not None:
                quiet.add_metric([], float(report["last_message_seconds_ago"]))
            yield quiet


def worker_failures(health: dict[str, Any]) -> Iterator[Metric]:
    """The worker's failed cycles, in all and since its last success, from its status report:
    the worker exports them and so does the API, which reads the worker's status file."""
    failures = CounterMetricFamily(
        "recsys_worker_retrain_failures", "Worker cycles (fold + retrain) that failed"
    )
    failures.add_metric([], float(health.get("failures_total", 0)))
    yield failures
    streak = GaugeMetricFamily(
        "recsys_worker_consecutive_failures", "Failed worker cycles since the last success"
    )
    streak.add_metric([], float(health.get("consecutive_failures", 0)))
    yield streak


class WorkerCollector(Collector):
    """The worker's cycles as it reports them (``worker-status.json``): retrain outcomes,
    failures, the last success."""

    def __init__(self, read: Callable[[], dict[str, Any] | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        health = self.read() or {}
        cycles = CounterMetricFamily(
            "recsys_worker_cycles",
            "Worker cycles by outcome: waiting (too few new events), swapped (a retrained model"
            " passed the gate), kept (it did not), retrained after erasure, failed",
            labels=["outcome"],
        )
        for outcome, count in sorted((health.get("decisions") or {}).items()):
            cycles.add_metric([outcome.replace(" ", "_")], float(count))
        cycles.add_metric(["failed"], float(health.get("failures_total", 0)))
        yield cycles
        yield from worker_failures(health)
        success = GaugeMetricFamily(
            "recsys_worker_last_success_timestamp_seconds",
            "When the worker last finished a cycle (Unix time)",
        )
        if health.get("last_success_at") is not None:
            success.add_metric([], float(health["last_success_at"]))
        yield success
        seconds = GaugeMetricFamily(
            "recsys_worker_last_retrain_seconds",
            "How long the last cycle that retrained (swapped, kept or after an erasure) took",
        )
        if health.get("last_retrain_seconds") is not None:
            seconds.add_metric([], float(health["last_retrain_seconds"]))
        yield seconds


def process_registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


def serve_metrics(registry: CollectorRegistry, port: int, host: str) -> None:
    """Prometheus text on ``http://host:port/metrics``, from a daemon thread: the worker and
    stream-ingest have no HTTP server of their own."""
    start_http_server(port, addr=host, registry=registry)
