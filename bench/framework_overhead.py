"""What a request costs the server before any recommending: the HTTP floor, FastAPI's routing,
the product's stack, and a plain answer on the fast path.

Four servers on this machine, each one uvicorn process, each measured with wrk -t2 -c32 for
--duration seconds, --rounds times in interleaved order, server CPU per request read from
/proc:

* a bare ASGI app answering fixed bytes (uvicorn's own cost: the floor);
* a bare FastAPI app with one ``async`` route answering the same bytes (FastAPI's routing,
  request-response wrapper, dependency solving and exception middleware on top);
* the product's ``/health`` (its whole middleware stack, through FastAPI's router) and plain
  ``/recommend`` for random known users (through ``serving/hot_reads.py``, past the router),
  on the 100k-item shop's ALS artifact of serving_load.

    python bench/framework_overhead.py [--duration 8] [--rounds 3] [--name NAME]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx

from _common import console, table, write_results
from serving_load import (
    LUA_DONE,
    LUA_RANDOM_USER,
    free_port,
    process_cpu_seconds,
    run_wrk,
    running_server,
    start_load_run,
    stop,
)

NAME = "framework_overhead"
BENCH = Path(__file__).resolve().parent


@contextlib.contextmanager
def bare_server(app: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [
        sys.executable, "-m", "uvicorn", app, "--app-dir", str(BENCH), "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/ping").status_code == 200:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"{app} did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield process
        finally:
            stop(process)


def measure(
    wrk: str, url: str, script: Path, pid: int, duration: int, label: str
) -> dict[str, Any]:
    before = process_cpu_seconds(pid)
    stats = run_wrk(wrk, url, script, duration, label)
    cpu = process_cpu_seconds(pid) - before
    return {
        "requests_per_second": stats["requests_per_second"],
        "server_cpu_ms_per_request": round(cpu / max(stats["requests"], 1) * 1000, 4),
        "non_2xx": stats["non_2xx"],
    }


def main() -> None:
    setup = start_load_run(__doc__, NAME, duration=8, rounds=3)
    args, wrk, start_load, catalog, folder = (
        setup.args, setup.wrk, setup.start_load, setup.catalog, setup.folder
    )  # fmt: skip
    plain = folder / "plain.lua"
    plain.write_text(LUA_DONE)
    with duckdb.connect(str(catalog.db), read_only=True) as con:
        user_rows = con.execute("SELECT DISTINCT user_id FROM events LIMIT 5000").fetchall()
    users = [row[0] for row in user_rows]
    users_script = folder / "users.lua"
    quoted = ",".join(f'"{user}"' for user in users)
    users_script.write_text(LUA_RANDOM_USER % (quoted, "/recommend") + LUA_DONE)
    ports = {name: free_port() for name in ("asgi", "fastapi", "product")}
    runs: dict[str, list[dict[str, Any]]] = {
        "bare ASGI": [], "bare FastAPI route": [], "/health": [], "/recommend (plain)": []
    }  # fmt: skip
    with (
        bare_server("_asgi_floor:bare_asgi", ports["asgi"], folder / "asgi.log") as asgi,
        bare_server("_asgi_floor:bare_fastapi", ports["fastapi"], folder / "fastapi.log") as fast,
        running_server(
            catalog.artifact, catalog.db, ports["product"], folder / "server.log", None
        ) as product,
    ):
        for _ in range(args.rounds):
            base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            targets = [
                ("bare ASGI", asgi.pid, f"{base['asgi']}/ping", plain),
                ("bare FastAPI route", fast.pid, f"{base['fastapi']}/ping", plain),
                ("/health", product.pid, f"{base['product']}/health", plain),
                ("/recommend (plain)", product.pid, f"{base['product']}/recommend", users_script),
            ]
            for label, pid, url, script in targets:
                runs[label].append(measure(wrk, url, script, pid, args.duration, label))
    rows = []
    summary = {}
    for label, measured in runs.items():
        cpu = statistics.median(m["server_cpu_ms_per_request"] for m in measured)
        rps = statistics.median(m["requests_per_second"] for m in measured)
        summary[label] = {
            "server_cpu_ms_per_request_median": cpu,
            "requests_per_second_median": rps,
        }
        rows.append([label, cpu, rps])
    console.print(
        table(
            f"one uvicorn process each, wrk -t2 -c32 -d{args.duration}s x{args.rounds}",
            ["server", "server CPU ms/request (median)", "requests/s (median)"],
            rows,
        )
    )
    write_results(
        args.name,
        {
            "load_average_1m_at_start": start_load,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "rounds": args.rounds,
            "duration_seconds": args.duration,
            "summary": summary,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
