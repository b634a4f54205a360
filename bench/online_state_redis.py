"""What does keeping online state in Redis cost a /recommend?

Serves the 100k-item ALS artifact shared with serving_load (built on first use) from two API
processes side by side: one with the state in its memory (ONLINE_STATE=memory), one with it in
a real redis-server (ONLINE_STATE=redis, bounded with maxmemory and volatile-lru as the README
advises). Both receive the same events (three per shopper) and then the same requests,
interleaved one by one so that both see the same machine load, for three kinds of shopper:

* ``online``: known shoppers with events since training (their history is read and folded in);
* ``known``: known shoppers without any (the read finds nothing; the model answers);
* ``new``: shoppers the model never saw, with events since training (fold-in from events only).

It also records what Redis holds afterwards (keys, memory, bytes per shopper) and how long the
ranker's fresh counts of 200 candidates over every window take to read from Redis (one script
call) and from in-process counters holding the same events.

    python bench/online_state_redis.py [--shoppers 300] [--rounds 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    console,
    empty_work_folder,
    percentiles_ms,
    prepare_catalog,
    table,
    warn_if_busy,
    write_results,
)
from serving_load import AUTH, free_port, running_server

NAME = "online_state_redis"
MODES = ("memory", "redis")
REDIS_MAXMEMORY = "256mb"


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make deps)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), "--maxmemory", REDIS_MAXMEMORY,
            "--maxmemory-policy", "volatile-lru",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def api_process(
    artifact: Path, db: Path, folder: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = folder / f"server-{env['ONLINE_STATE']}.log"
    quiet = {"MODEL_WATCH_INTERVAL": "0", "INBOX_DRAIN_INTERVAL": "0", **env}
    with running_server(artifact, db, port, log, None, env=quiet) as process:
        yield f"http://127.0.0.1:{port}", process


def post_events(client: httpx.Client, users: list[str], items: list[str], seed: int) -> list[str]:
    """Three events per shopper; the items they touched."""
    rng = np.random.default_rng(seed)
    touched: list[str] = []
    for start in range(0, len(users), 100):
        rows = [
            {"user_id": user, "item_id": str(item), "event_type": kind}
            for user in users[start : start + 100]
            for item, kind in zip(
                rng.choice(items, 3, replace=False), ("view", "view", "purchase"), strict=True
            )
        ]
        client.post("/events", json={"events": rows}, headers=AUTH).raise_for_status()
        touched += [row["item_id"] for row in rows]
    return touched


def timed_get(client: httpx.Client, user: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.get("/recommend", params={"user_id": user, "k": 10})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds, response.json()["source"]


def fresh_counter_reads(url: str, prefix: str, touched: list[str], repeats: int) -> dict[str, Any]:
    """One ranker request's fresh item counts (200 candidates, every window): from Redis (one
    script call) and from the in-process counters holding the same events."""
    import redis

    from recsys_lite.online.redis_counters import SharedItemCounters
    from recsys_lite.ranking.features import FRESH_WINDOWS, WindowCounters

    shared = SharedItemCounters(redis.Redis.from_url(url), prefix, ([], [], 0))
    local = WindowCounters()
    now = int(time.time())
    for item in touched:
        local.add(item, now)
    rng = np.random.default_rng(0)
    seconds: dict[str, list[float]] = {"redis": [], "memory": []}
    for _ in range(repeats):
        keys = [str(item) for item in rng.choice(touched, 200)]
        for kind, counters in (("redis", shared), ("memory", local)):
            started = time.perf_counter()
            for window in FRESH_WINDOWS.values():
                counters.count(keys, now + 1, window)
            seconds[kind].append(time.perf_counter() - started)
    return {kind: percentiles_ms(values) for kind, values in seconds.items()}


def latency(figures: dict[str, float]) -> list[float]:
    return [figures["p50"], figures["p99"], figures["mean"]]


def redis_report(url: str, prefix: str, shoppers: int, events: int) -> dict[str, Any]:
    import redis

    client: Any = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    kinds: dict[str, int] = {}
    for key in keys:
        kind = key.decode()[len(prefix) :].split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    per_shopper = [
        int(client.memory_usage(key) or 0)
        for key in keys
        if key.decode()[len(prefix) :].split(":")[0] in ("recent", "counted")
    ]
    fresh = [
        int(client.memory_usage(key) or 0)
        for key in keys
        if key.decode()[len(prefix) :].startswith("fresh:")
    ]
    memory = client.info("memory")
    return {
        "keys": len(keys),
        "keys_by_kind": kinds,
        "keys_without_ttl": sum(1 for key in keys if client.ttl(key) < 0),
        "used_memory_bytes": int(memory["used_memory"]),
        "maxmemory": REDIS_MAXMEMORY,
        "maxmemory_policy": memory.get("maxmemory_policy"),
        "bytes_per_shopper_recent_and_counted": round(sum(per_shopper) / max(shoppers, 1)),
        "bytes_per_event_fresh_counters": round(sum(fresh) / max(events, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers", type=int, default=300, help="per kind of shopper")
    parser.add_argument("--rounds", type=int, default=2, help="requests per shopper and mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    load_at_start = warn_if_busy()
    catalog = prepare_catalog()
    with np.load(catalog.artifact / "model.npz", allow_pickle=False) as arrays:
        known = arrays["user_ids"].astype(str)
        items = arrays["item_ids"].astype(str).tolist()
    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(known, size=2 * args.shoppers, replace=False).tolist()
    kinds = {
        "online": chosen[: args.shoppers],
        "known": chosen[args.shoppers :],
        "new": [f"bench-new-{n}" for n in range(args.shoppers)],
    }
    folder = empty_work_folder(NAME)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    samples: dict[tuple[str, str], list[float]] = {}
    sources: dict[tuple[str, str], set[str]] = {}
    with redis_server(folder) as redis_url:
        envs = {
            "memory": {"ONLINE_STATE": "memory", "EVENT_BUS": "embedded",
                       "INBOX_DIR": str(folder / "inbox-memory")},
            "redis": {"ONLINE_STATE": "redis", "EVENT_BUS": "redis", "REDIS_URL": redis_url,
                      "BUS_TOPIC": topic, "INBOX_DIR": str(folder / "inbox-redis")},
        }  # fmt: skip
        with contextlib.ExitStack() as stack:
            clients = {}
            for mode, env in envs.items():
                url, _ = stack.enter_context(api_process(catalog.artifact, catalog.db, folder, env))
                clients[mode] = stack.enter_context(httpx.Client(base_url=url, timeout=30))
            for client in clients.values():
                touched = post_events(client, kinds["online"] + kinds["new"], items, args.seed)
            time.sleep(1.0)
            for client in clients.values():  # warm-up: imports, caches, connections
                for user in chosen[:20]:
                    timed_get(client, user)
            for round_ in range(args.rounds):
                for kind, users in kinds.items():
                    for n, user in enumerate(users):
                        # alternate which mode goes first, so neither always follows the other
                        order = MODES if (n + round_) % 2 == 0 else MODES[::-1]
                        for mode in order:
                            seconds, source = timed_get(clients[mode], user)
                            samples.setdefault((kind, mode), []).append(seconds)
                            sources.setdefault((kind, mode), set()).add(source)
        stored = redis_report(redis_url, f"{topic}:online:", 2 * args.shoppers, len(touched))
        fresh = fresh_counter_reads(redis_url, f"{topic}:online:", touched, 300)

    results = [
        {
            "shoppers": kind,
            "online_state": mode,
            "requests": len(values),
            "sources": sorted(sources[(kind, mode)]),
            "latency_ms": percentiles_ms(values),
        }
        for (kind, mode), values in samples.items()
    ]
    console.print(
        table(
            "GET /recommend (k=10), 100k items, sequential over one connection",
            ["shoppers", "state", "requests", "p50 ms", "p99 ms", "mean ms"],
            [
                [r["shoppers"], r["online_state"], r["requests"], *latency(r["latency_ms"])]
                for r in results
            ],
        )
    )
    console.print(f"Redis afterwards: {stored}")
    console.print(f"fresh counts of 200 candidates, every window: {fresh}")
    write_results(
        NAME,
        {
            "config": {"shoppers_per_kind": args.shoppers, "rounds": args.rounds,
                       "events_per_shopper": 3, "seed": args.seed},
            "load_average_1m_at_start": load_at_start,
            "results": results,
            "redis": stored,
            "fresh_counts_200_candidates_ms": fresh,
        },
    )  # fmt: skip


if __name__ == "__main__":
    main()
