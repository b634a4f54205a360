"""How many events a second one API process takes from a shop's pages, and whether all land.

A shop's pages post an event per view (the widget) and its back end one per purchase. Same
100k-item shop and ALS artifact as serving_load, copied into a folder of its own (the server
spools into its inbox and folds it into the copy's store); ``recsys-lite serve``, one process,
keys and rate limits on, the default inbox drain. Measured:

a) one connection, sequential: --requests POSTs of one event each, wall time per request;
b) wrk -t2 -c32, --rounds runs of --duration seconds: one event per POST, each from a shopper
   id of its own (no two events alike, so the store's duplicate check drops none); events
   accepted per second, wrk's latencies and the server's CPU per event (from /proc);
c) afterwards, every accepted event is looked for in the store and in the inbox files not yet
   folded in (acknowledged means durable): the count must match.

Events carry the events-scope key, as a shop's back end sends them (the browser's keyless
views go through the same path plus a per-shopper limit).

    python bench/events_load.py [--requests 1000] [--duration 10] [--rounds 3] [--name NAME]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq

from _common import (
    console,
    percentiles_ms,
    table,
    write_results,
)
from serving_during_training import copy_shop
from serving_load import (
    AUTH,
    BENCH_KEY,
    LUA_DONE,
    LUA_THREAD_SEED,
    free_port,
    process_cpu_seconds,
    run_wrk,
    running_server,
    start_load_run,
)

NAME = "events_load"
LUA_EVENTS = (
    """
local items = {%s}
local run = "%s"
local sent = 0
"""
    + LUA_THREAD_SEED.replace("%", "%%")
    + """
request = function()
  sent = sent + 1
  local body = string.format(
    '{"user_id":"%%s-%%d-%%d","item_id":"%%s","event_type":"view"}',
    run, thread_seed, sent, items[math.random(#items)])
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"}, body)
end
"""
)


def stored_events(db: Path, prefix: str) -> int | None:
    """Events of this run in the store; None while the server is folding its inbox in."""
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException:
        return None
    try:
        row = con.execute(
            "SELECT count(*) FROM events WHERE starts_with(user_id, ?)", [prefix]
        ).fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def spooled_events(inbox: Path, prefix: str) -> int:
    """Events of this run still in inbox files (acknowledged, not yet folded into the store)."""
    total = 0
    for path in inbox.glob("events-*.parquet"):
        users = pq.read_table(path, columns=["user_id"]).column("user_id")
        total += int(pc.sum(pc.starts_with(users, prefix)).as_py() or 0)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000)
    setup = start_load_run(__doc__, NAME, duration=10, rounds=3, parser=parser)
    args, wrk, start_load, catalog, folder = (
        setup.args, setup.wrk, setup.start_load, setup.catalog, setup.folder
    )  # fmt: skip
    db, artifact = copy_shop(catalog.db, catalog.artifact, folder)
    with duckdb.connect(str(db), read_only=True) as con:
        items = [r[0] for r in con.execute("SELECT item_id FROM items LIMIT 5000").fetchall()]
    run = f"bench{uuid.uuid4().hex[:8]}"
    script = folder / "events.lua"
    quoted = ",".join(f'"{item}"' for item in items)
    script.write_text(LUA_EVENTS % (quoted, run, BENCH_KEY) + LUA_DONE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rounds: list[dict[str, Any]] = []
    accepted = 0
    with running_server(artifact, db, port, folder / "server.log", None) as server:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as client:
            seconds = []
            for n in range(args.requests):
                event = {"user_id": f"{run}-seq-{n}", "item_id": items[n % len(items)]}
                started = time.perf_counter()
                response = client.post("/events", json=event | {"event_type": "view"})
                seconds.append(time.perf_counter() - started)
                response.raise_for_status()
            accepted += args.requests
            single = percentiles_ms(seconds[100:])
        for round_ in range(1, args.rounds + 1):
            cpu_before = process_cpu_seconds(server.pid)
            stats = run_wrk(wrk, f"{base}/events", script, args.duration, "POST /events")
            cpu = process_cpu_seconds(server.pid) - cpu_before
            ok = stats["requests"] - stats["non_2xx"]
            accepted += ok
            stats |= {
                "round": round_,
                "events_per_second": round(ok / (stats["duration_us"] / 1e6), 1),
                "server_cpu_ms_per_event": round(cpu / max(stats["requests"], 1) * 1000, 3),
            }
            rounds.append(stats)
        time.sleep(5)  # a drain or two (INBOX_DRAIN_INTERVAL), for the store's share
    # acknowledged means durable: in the store, or still spooled in the inbox for the next drain
    stored = stored_events(db, run) or 0
    spooled = spooled_events(db.parent / "inbox", run)
    rows = [
        [r["round"], r["events_per_second"], r["server_cpu_ms_per_event"],
         r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000, r["non_2xx"]]
        for r in rounds
    ]  # fmt: skip
    console.print(f"one connection: p50 {single['p50']} ms, p99 {single['p99']} ms")
    console.print(
        table(
            "POST /events, one event each, wrk -t2 -c32",
            ["round", "events/s", "server CPU ms/event", "p50 ms", "p99 ms", "non-2xx"],
            rows,
        )
    )
    console.print(
        f"acknowledged {accepted:,}: {stored:,} in the store, {spooled:,} still in the inbox"
        " (wrk stops counting before the last requests in flight are answered, so the two can"
        " hold a few more)"
    )
    write_results(
        args.name,
        {
            "load_average_1m_at_start": start_load,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "shop": catalog.folder.name,
            "single_connection": {"requests": args.requests - 100, "latency_ms": single},
            "wrk": [{k: v for k, v in r.items() if k != "wrk_output"} for r in rounds],
            "events_per_second_median": sorted(r["events_per_second"] for r in rounds)[
                len(rounds) // 2
            ],
            "accepted": accepted,
            "in_store": stored,
            "in_inbox": spooled,
            "all_durable": stored + spooled >= accepted,
        },
    )


if __name__ == "__main__":
    main()
