"""Where a category page's request spends the server's CPU: each part of the page request
(a category filter, diversity, explanations) added to the plain /recommend alone, then all of
them, next to /health.

The 100k-item shop's ALS artifact of serving_load and serving_filters, one ``recsys-lite
serve`` process, random known users; wrk -t2 -c32 for --duration seconds per kind, --rounds
times in interleaved order, server CPU per request from /proc. The category is the store's
median-sized one, as in serving_filters.

    python bench/page_parts.py [--duration 6] [--rounds 3] [--name NAME]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
from typing import Any

import duckdb

from _common import console, table, write_results
from framework_overhead import measure
from serving_filters import filters
from serving_load import LUA_DONE, LUA_RANDOM_USER, free_port, running_server, start_load_run

NAME = "page_parts"


def main() -> None:
    setup = start_load_run(__doc__, NAME, duration=6, rounds=3)
    args, wrk, start_load, catalog, folder = (
        setup.args, setup.wrk, setup.start_load, setup.catalog, setup.folder
    )  # fmt: skip
    page, _, _ = filters(catalog.db)
    category = page["category"]
    with duckdb.connect(str(catalog.db), read_only=True) as con:
        user_rows = con.execute("SELECT DISTINCT user_id FROM events LIMIT 5000").fetchall()
    quoted = ",".join(f'"{row[0]}"' for row in user_rows)
    kinds = {
        "plain": "",
        "category": f"category={category}&",
        "diversity_lambda=0.8": "diversity_lambda=0.8&",
        "explain": "explain=true&",
        "page (all three)": f"category={category}&diversity_lambda=0.8&explain=true&",
    }
    scripts = {}
    for n, (kind, query) in enumerate(kinds.items()):
        script = folder / f"kind{n}.lua"
        lua = (LUA_RANDOM_USER % (quoted, "/recommend")).replace("?k=10&", f"?k=10&{query}")
        script.write_text(lua + LUA_DONE)
        scripts[kind] = script
    health = folder / "health.lua"
    health.write_text(LUA_DONE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in [*kinds, "/health"]}
    with running_server(catalog.artifact, catalog.db, port, folder / "server.log", None) as server:
        for _ in range(args.rounds):
            for kind, script in scripts.items():
                runs[kind].append(
                    measure(wrk, f"{base}/recommend", script, server.pid, args.duration, kind)
                )
            runs["/health"].append(
                measure(wrk, f"{base}/health", health, server.pid, args.duration, "/health")
            )
    summary = {
        kind: statistics.median(m["server_cpu_ms_per_request"] for m in measured)
        for kind, measured in runs.items()
    }
    plain = summary["plain"]
    console.print(
        table(
            f"one server process, wrk -t2 -c32 -d{args.duration}s x{args.rounds}",
            ["request", "server CPU ms/request (median)", "over plain /recommend"],
            [[kind, cpu, round(cpu - plain, 4)] for kind, cpu in summary.items()],
        )
    )
    write_results(
        args.name,
        {
            "load_average_1m_at_start": start_load,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "artifact": catalog.artifact.name,
            "category": category,
            "rounds": args.rounds,
            "server_cpu_ms_per_request_median": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
