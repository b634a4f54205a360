"""Metrics, alerts, dashboard, traces and logs, with the real things: a Prometheus server (the
Debian package) scraping a real ``recsys-lite serve``, ``worker`` and ``stream-ingest``, loading
deploy/alerts.yml and answering every query of deploy/grafana-dashboard.json; spans caught by
OpenTelemetry's in-memory exporter; the JSON log lines of a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import AUTH, copy_shop, free_port, require_component, running_server, stop

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        try:
            yield proc
        finally:
            stop(proc)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "recsys_lite.cli", *args]


def prometheus_config(targets: dict[str, str], folder: Path) -> Path:
    """deploy/prometheus.yml with its jobs pointed at the local processes, scraped and
    evaluated every second, and deploy/alerts.yml as it is."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "alerts.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) == set(jobs), "every job of the example config is tested"
    for name, job in jobs.items():
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [targets[name]]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alert_state(self, name: str) -> str | None:
        for alert in self.get("alerts")["alerts"]:
            if alert["labels"]["alertname"] == name:
                return str(alert["state"])
        return None


@contextmanager
def running_prometheus(config: Path, folder: Path) -> Iterator[Prometheus]:
    binary = require_component("prometheus")
    port = free_port()
    args = [
        binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip
    with process(args, folder / "prometheus.log") as proc:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, "prometheus to start")
        yield Prometheus(url)


def scrape(url: str) -> str:
    return httpx.get(url, timeout=5).text


def test_prometheus_scrapes_api_worker_and_ingest_and_evaluates_alerts_and_dashboard(
    tmp_path: Path, als_artifact: Path, shop_db: Path, shop_files: tuple[Path, Path]
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    watched = tmp_path / "incoming"
    watched.mkdir()
    worker_port, ingest_port = free_port(), free_port()
    worker_args = cli(
        "worker", "--model-dir", str(model), "--db", str(db), "--interval", "1",
        "--min-new-events", "200", "--metrics-port", str(worker_port),
    )  # fmt: skip
    ingest_args = cli(
        "stream-ingest", "--watch", str(watched), "--db", str(db), "--interval", "0.5",
        "--settle-seconds", "0", "--metrics-port", str(ingest_port),
    )  # fmt: skip
    # the worker alone folds the inbox into the store (as in deploy/compose.yaml)
    with (
        running_server(model, db, tmp_path, env={"INBOX_DRAIN_INTERVAL": "0"}) as api,
        process(worker_args, tmp_path / "worker.log", {"LOG_LEVEL": "WARNING"}) as worker,
        process(ingest_args, tmp_path / "ingest.log", {"LOG_LEVEL": "WARNING"}),
    ):
        for port in (worker_port, ingest_port):
            wait_for(lambda p=port: _answers(f"http://127.0.0.1:{p}/metrics"), 60, "metrics port")
        targets = {
            "recsys-api": api.removeprefix("http://"),
            "recsys-worker": f"127.0.0.1:{worker_port}",
            "recsys-ingest": f"127.0.0.1:{ingest_port}",
        }
        with running_prometheus(prometheus_config(targets, tmp_path), tmp_path) as prometheus:

            def all_up() -> bool:
                active = prometheus.get("targets")["activeTargets"]
                return len(active) == 3 and all(t["health"] == "up" for t in active)

            wait_for(all_up, 30, "every target to be scraped")
            # traffic after the first scrapes, so that rates see it arrive
            events = pq.read_table(shop_files[0]).slice(0, 300)
            known = events.column("user_id").to_pylist()[:20]
            for user in known:
                assert httpx.get(f"{api}/recommend", params={"user_id": user}).status_code == 200
            for n in range(40):
                httpx.get(f"{api}/recommend", params={"user_id": f"nobody-{n}"})
            # spread over the last minutes: the worker's gate splits new events in time
            now = int(time.time())
            rows = [
                {"user_id": u, "item_id": i, "event_type": "purchase", "ts": now - 300 + n}
                for n, (u, i) in enumerate(
                    zip(
                        events.column("user_id").to_pylist(),
                        events.column("item_id").to_pylist(),
                        strict=True,
                    )
                )
            ]
            posted = httpx.post(f"{api}/events", json={"events": rows}, headers=AUTH)
            assert posted.status_code == 200, posted.text
            (watched / "late.csv").write_text(
                "user_id,item_id,ts\n"
                + "".join(f"late-{n},{rows[n]['item_id']},{1_700_000_000 + n}\n" for n in range(25))
            )

            expectations = {
                'sum(recsys_requests_total{job="recsys-api",endpoint="/recommend"})': 60,
                'sum(recsys_fallbacks_total{job="recsys-api"})': 40,
                'recsys_online_events_applied_total{job="recsys-api",origin="request"}': 300,
                'recsys_events_ingested_total{job="recsys-worker"}': 300,
                'recsys_ingest_lag_seconds_count{job="recsys-worker"}': 1,
                'recsys_events_ingested_total{job="recsys-ingest"}': 25,
                'recsys_model_age_seconds{job="recsys-api"}': 0.001,
                'recsys_model_age_seconds{job="recsys-worker"}': 0.001,
                'sum(recsys_worker_cycles_total{job="recsys-worker",outcome=~"swapped|kept"})': 1,
            }

            def met() -> bool:
                return all(
                    (prometheus.value(expr) or 0) >= least for expr, least in expectations.items()
                )

            try:
                wait_for(met, 120, "the metrics to show the traffic")
            except AssertionError:
                seen = {expr: prometheus.value(expr) for expr in expectations}
                raise AssertionError(f"metrics short of what was sent: {seen}") from None

            # every rule of deploy/alerts.yml evaluates on real series without error
            def rules_evaluated() -> list[dict[str, Any]] | None:
                rules = [r for g in prometheus.get("rules")["groups"] for r in g["rules"]]
                return rules if all(r["health"] != "unknown" for r in rules) else None

            rules = wait_for(rules_evaluated, 30, "the rules to be evaluated")
            assert len(rules) == 11
            assert [r["name"] for r in rules if r["health"] != "ok"] == []

            # unknown shoppers keep coming (a rate needs the counter to move between two
            # scrapes, which the burst above may have finished before): the fallback alert
            # is on its way
            def fallback_alert() -> str | None:
                for n in range(5):
                    httpx.get(
                        f"{api}/recommend", params={"user_id": f"stranger-{time.time_ns()}-{n}"}
                    )
                state: str | None = prometheus.alert_state("RecsysHighFallbackRate")
                return state

            state = wait_for(fallback_alert, 90, "fallback alert")
            assert state in ("pending", "firing")
            assert prometheus.alert_state("RecsysWorkerDown") is None

            # every panel of the dashboard is a query Prometheus answers; the main ones have data
            dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
            empty = []
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    if not prometheus.query(target["expr"]):
                        empty.append(panel["title"])
            must_show = {
                "Requests per second by endpoint", "Recommendation latency",
                "Popular fallback share of /recommend answers", "Online events applied per second",
                "Events written to the store per second", "Model age", "Targets up",
                "Worker cycles by outcome (last hour)", "Bus lag: batches not in the store",
            }  # fmt: skip
            assert must_show.isdisjoint(empty), sorted(must_show & set(empty))

            # the worker stops: its alert starts at the next evaluation
            worker.terminate()
            worker.wait(timeout=15)
            state = wait_for(
                lambda: prometheus.alert_state("RecsysWorkerDown"), 30, "worker-down alert"
            )
            assert state == "pending"  # it fires after 2 minutes down


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_json_logs_carry_request_ids_and_no_shopper_ids(
    tmp_path: Path, als_artifact: Path, shop_db: Path, shop_files: tuple[Path, Path]
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    user = pq.read_table(shop_files[0]).column("user_id")[0].as_py()
    env = {"LOG_FORMAT": "json", "SLOW_REQUEST_SECONDS": "0", "LOG_LEVEL": "INFO"}
    with running_server(model, db, tmp_path, env=env) as api:
        mine = httpx.get(
            f"{api}/recommend", params={"user_id": user, "k": 3},
            headers={"X-Request-ID": "checkout-7f3a"},
        )  # fmt: skip
        generated = httpx.get(f"{api}/users/{user}/profile", headers=AUTH)
        # a header that could smuggle a line break (or anything) into the logs is replaced
        hostile = httpx.get(f"{api}/health", headers={"X-Request-ID": "a b{}"})
        time.sleep(0.5)
    assert mine.headers["x-request-id"] == "checkout-7f3a"
    new_id = generated.headers["x-request-id"]
    assert generated.status_code == 200 and len(new_id) == 16
    assert hostile.headers["x-request-id"] not in ("a b{}", "")

    log = next(tmp_path.glob("server-*.log")).read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # each line is JSON
    requests = {line["request_id"]: line for line in lines if line.get("message") == "slow request"}
    assert requests["checkout-7f3a"]["route"] == "/recommend"
    assert requests["checkout-7f3a"]["status"] == 200
    assert requests[new_id]["route"] == "/users/{user_id}/profile"
    assert hostile.headers["x-request-id"] in requests
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # neither the shopper's id, the query string nor the key reaches the log
    for secret in (user, "k=3", AUTH["Authorization"].split()[-1]):
        assert secret not in log


@pytest.fixture
def memory_spans() -> Iterator[Any]:
    pytest.importorskip("opentelemetry.sdk", reason="the tracing extra is not installed")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from recsys_lite.config import Settings
    from recsys_lite.observability.tracing import disable_tracing
    from recsys_lite.serving.instrumentation import enable_api_tracing

    exporter = InMemorySpanExporter()
    enable_api_tracing(Settings(tracing=True), exporter=exporter)
    try:
        yield exporter
    finally:
        disable_tracing()


def test_tracing_off_leaves_the_hot_path_untouched(als_artifact: Path, shop_db: Path) -> None:
    from recsys_lite.config import Settings
    from recsys_lite.models.base import Recommender
    from recsys_lite.serving import lists
    from recsys_lite.serving.app import create_app

    before = (Recommender.recommend, lists.rerank)
    app = create_app(Settings(model_dir=als_artifact, db_path=shop_db))
    assert (Recommender.recommend, lists.rerank) == before
    names = {m.cls.__name__ for m in app.user_middleware}
    assert "TracingMiddleware" not in names and "RequestContextMiddleware" not in names


def test_spans_for_request_retrieval_ranking_store_and_bus(
    memory_spans: Any, tmp_path: Path, als_artifact: Path, shop_db: Path,
    shop_files: tuple[Path, Path],
) -> None:  # fmt: skip
    from fastapi.testclient import TestClient

    from conftest import ADMIN_KEY
    from recsys_lite.config import Settings
    from recsys_lite.serving.app import create_app

    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    events = pq.read_table(shop_files[0])
    user, item = events.column("user_id")[0].as_py(), events.column("item_id")[0].as_py()
    settings = Settings(
        model_dir=model, db_path=db, tracing=True, admin_api_key=ADMIN_KEY,
        inbox_drain_interval=0, model_watch_interval=0,
    )  # fmt: skip
    with TestClient(create_app(settings)) as client:
        memory_spans.clear()
        answer = client.get(
            "/recommend", params={"user_id": user},
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        recommend_spans = memory_spans.get_finished_spans()
        memory_spans.clear()
        assert client.post(
            "/events", json={"user_id": user, "item_id": item}, headers=AUTH
        ).status_code == 200  # fmt: skip
        assert client.get("/status", headers=AUTH).status_code == 200
        write_spans = memory_spans.get_finished_spans()

    by_name = {span.name: span for span in recommend_spans}
    root = by_name["GET /recommend"]
    # the caller's trace goes on
    assert f"{root.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert root.attributes["http.route"] == "/recommend"
    assert root.attributes["http.response.status_code"] == 200
    for name in ("retrieval", "ranking"):
        span = by_name[name]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == root.context.trace_id
    assert by_name["retrieval"].attributes["recsys.model"] == "als"

    names = [span.name for span in write_spans]
    assert "bus" in names and "store" in names and "POST /events" in names
    bus = next(span for span in write_spans if span.name == "bus")
    assert bus.attributes["messaging.operation"] == "publish"

    # no span carries a shopper's or an item's id
    for span in [*recommend_spans, *write_spans]:
        values = " ".join(str(v) for v in (span.attributes or {}).values()) + span.name
        assert user not in values and item not in values
