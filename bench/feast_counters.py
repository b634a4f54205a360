"""Would Feast, with a Redis online store, fit the ranker's budget for fresh features?

The served ranker needs, per request, the fresh counters (``ranking/features.py``) of one user
and of its ~200 candidates. This benchmark keeps the same counts in two places and reads them
the way a request would:

* embedded: ``FreshCounters`` fed with every event, read in-process (what the product does);
* Feast 0.x with a real ``redis-server`` as its online store: the same counts, computed by the
  offline definition (``EventCounts``) at one instant and written with
  ``write_to_online_store``, read with ``get_online_features`` for one user and 200 items.

It checks that both give the same values, then times reads (one request = one user + 200
candidates) and the write a fresh counter needs after each batch of events.

Feast pins older ``redis`` and ``prometheus-client`` releases than the product, so it runs from
a virtual environment of its own, with the product's source on the path (``ranking/features.py``
needs only numpy):

    python3 -m venv /tmp/feast-venv && /tmp/feast-venv/bin/pip install "feast[redis]" rich
    PYTHONPATH=src /tmp/feast-venv/bin/python bench/feast_counters.py [--requests 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.repo_config import RepoConfig
from feast.types import Float32
from rich.console import Console
from rich.table import Table

from recsys_lite.ranking.features import FRESH_WINDOWS, EventCounts, FreshCounters, fresh_features

NAME = "feast_counters"
RESULTS = Path(__file__).resolve().parent / "results"
console = Console(width=None if sys.stdout.isatty() else 160)
ITEM_FEATURES = [f"item_events_{name}" for name in FRESH_WINDOWS] + ["item_velocity"]
USER_FEATURES = [f"user_events_{name}" for name in FRESH_WINDOWS]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make deps)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def synthetic_events(
    users: int, items: int, events: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zipf-popular items, a day and a half of events, more of them recently."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    item = rng.choice(items, size=events, p=popularity / popularity.sum())
    user = rng.integers(0, users, size=events)
    span = 36 * 3_600
    ts = 1_700_000_000 + np.sort((span * rng.beta(2.0, 1.0, size=events)).astype(np.int64))
    return user, item, ts


def feast_store(repo: Path, redis_port: int) -> FeatureStore:
    config = RepoConfig(
        project="fresh_counters",
        registry=str(repo / "registry.db"),
        provider="local",
        online_store=RedisOnlineStoreConfig(connection_string=f"127.0.0.1:{redis_port}"),
        entity_key_serialization_version=3,
        repo_path=repo,
    )
    store = FeatureStore(config=config)
    # the offline source is never read: values are written to the online store directly, as an
    # event path would; Feast still wants a batch source on every view
    source_file = repo / "empty.parquet"
    pd.DataFrame(
        {"item_id": ["i"], "user_id": ["u"], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
    ).to_parquet(source_file)
    source = FileSource(path=str(source_file), timestamp_field="event_timestamp")
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    item_view = FeatureView(
        name="item_fresh",
        entities=[item],
        schema=[Field(name=name, dtype=Float32) for name in ITEM_FEATURES],
        source=source,
        online=True,
    )
    user_view = FeatureView(
        name="user_fresh",
        entities=[user],
        schema=[Field(name=name, dtype=Float32) for name in USER_FEATURES],
        source=source,
        online=True,
    )
    store.apply([item, user, item_view, user_view])
    return store


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    values = np.asarray(samples) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(values.mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--write-batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)

    user, item, ts = synthetic_events(args.users, args.items, args.events, seed=7)
    at = int(ts[-1])
    console.print(f"{args.events:,} events, {args.items:,} items; counting at the last event")

    embedded = FreshCounters()
    started = time.perf_counter()
    for u, i, t in zip(user.tolist(), item.tolist(), ts.tolist(), strict=True):
        embedded.observe(f"u{u}", f"i{i}", t)
    embedded_feed_seconds = time.perf_counter() - started

    # the same counts by the offline definition, for every item and user that has events
    item_counts, user_counts = EventCounts(item, ts), EventCounts(user, ts)
    seen_items, seen_users = np.unique(item), np.unique(user)
    item_values = fresh_features(
        lambda w: np.zeros(seen_items.size), lambda w: item_counts.count(seen_items, at, w)
    )
    user_values = fresh_features(
        lambda w: user_counts.count(seen_users, at, w), lambda w: np.zeros(seen_users.size)
    )
    stamp = pd.Timestamp(datetime.fromtimestamp(at, tz=UTC))

    rng = np.random.default_rng(11)
    requests = [
        (int(rng.choice(user)), rng.choice(item, size=args.candidates, replace=False))
        for _ in range(args.requests)
    ]

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        redis_process, port = start_redis(folder)
        try:
            store = feast_store(folder, port)
            started = time.perf_counter()
            store.write_to_online_store(
                "item_fresh",
                pd.DataFrame(
                    {
                        "item_id": [f"i{i}" for i in seen_items],
                        **{name: item_values[name] for name in ITEM_FEATURES},
                        "event_timestamp": stamp,
                    }
                ),
            )
            store.write_to_online_store(
                "user_fresh",
                pd.DataFrame(
                    {
                        "user_id": [f"u{u}" for u in seen_users],
                        **{name: user_values[name] for name in USER_FEATURES},
                        "event_timestamp": stamp,
                    }
                ),
            )
            feast_load_seconds = time.perf_counter() - started
            feature_refs = [f"item_fresh:{name}" for name in ITEM_FEATURES] + [
                f"user_fresh:{name}" for name in USER_FEATURES
            ]

            def read_feast(user_id: int, items: np.ndarray) -> dict[str, list[Any]]:
                rows = [{"item_id": f"i{i}", "user_id": f"u{user_id}"} for i in items]
                answer: dict[str, list[Any]] = store.get_online_features(
                    features=feature_refs, entity_rows=rows
                ).to_dict()
                return answer

            def read_embedded(user_id: int, items: np.ndarray) -> dict[str, np.ndarray]:
                return embedded.features(f"u{user_id}", [f"i{i}" for i in items], at)

            mismatches = 0
            for user_id, items in requests[:50]:
                from_feast = read_feast(user_id, items)
                from_embedded = read_embedded(user_id, items)
                for name in ITEM_FEATURES + USER_FEATURES:
                    feast_column = np.asarray(from_feast[name], dtype=np.float32)
                    if not np.allclose(feast_column, from_embedded[name], rtol=1e-6):
                        mismatches += 1
            console.print(f"values compared on 50 requests: {mismatches} mismatching features")

            timings: dict[str, list[float]] = {"feast": [], "embedded": []}
            for round_number in range(2):  # interleaved, so both see the same machine
                for user_id, items in requests:
                    for name, read in (("feast", read_feast), ("embedded", read_embedded)):
                        started = time.perf_counter()
                        read(user_id, items)
                        if round_number:
                            timings[name].append(time.perf_counter() - started)

            # what keeping the counts fresh costs: after each batch of events, the touched items'
            # and users' counts are recomputed and written
            write_seconds: list[float] = []
            for batch in range(args.write_batches):
                rows = rng.integers(0, args.events, size=args.batch_size)
                batch_items = np.unique(item[rows])
                values = fresh_features(
                    lambda w, b=batch_items: np.zeros(b.size),
                    lambda w, b=batch_items: item_counts.count(b, at, w),
                )
                frame = pd.DataFrame(
                    {
                        "item_id": [f"i{i}" for i in batch_items],
                        **{name: values[name] for name in ITEM_FEATURES},
                        "event_timestamp": stamp + pd.Timedelta(seconds=batch + 1),
                    }
                )
                started = time.perf_counter()
                store.write_to_online_store("item_fresh", frame)
                write_seconds.append(time.perf_counter() - started)
        finally:
            redis_process.terminate()
            redis_process.wait(timeout=10)

    reads = {name: percentiles_ms(samples) for name, samples in timings.items()}
    writes = percentiles_ms(write_seconds)
    table = Table(title=f"fresh features of 1 user + {args.candidates} candidates, per request")
    for column in ("store", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
        table.add_column(column)
    for name, figures in reads.items():
        table.add_row(name, *(f"{figures[key]:.3f}" for key in ("p50", "p95", "p99", "mean")))
    console.print(table)
    console.print(
        f"Feast write of one batch's item counters ({args.batch_size} events): "
        f"p50 {writes['p50']:.2f} ms, p99 {writes['p99']:.2f} ms"
    )

    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": NAME,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "libraries": {name: version(name) for name in ("feast", "redis", "pandas", "numpy")},
        },
        "load_average_1m_at_start": load_at_start,
        "users": args.users,
        "items": args.items,
        "events": args.events,
        "candidates": args.candidates,
        "requests": args.requests,
        "mismatching_features": mismatches,
        "embedded_feed_seconds": round(embedded_feed_seconds, 2),
        "feast_initial_write_seconds": round(feast_load_seconds, 2),
        "read_ms": reads,
        "feast_batch_write_ms": writes,
    }
    path = RESULTS / f"{NAME}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"results written to {path}")


if __name__ == "__main__":
    main()
