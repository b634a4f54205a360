"""How fast does ``recsys-lite serve`` answer, alone and under load?

Serves the 100k-item, 64-factor ALS artifact shared with index_recall (built on first use) from
a ``recsys-lite serve`` subprocess on a free loopback port, then measures

a) single-connection latency of /recommend, client-side with httpx over one kept-alive
   connection, ~2,000 sequential requests for random known users, through the Faiss index and
   with ``use_faiss=false`` (exact numpy scoring), and for users the model has never seen (the
   popular fallback);
b) throughput with wrk (-t2 -c32) for /health (the framework's floor: no model work) and
   for /recommend, in the same server run: --rounds pairs of runs (/health then /recommend,
   --duration seconds each), interleaved so that a change in the machine's speed (it is
   shared) moves both sides of a pair alike; the ratio reported is the median over the pairs.
   Both wrk runs execute the same Lua per request (a random known user id in the query string;
   /health ignores it), so the client's share of the two cores is the same and the ratio
   compares the server's work. The server's own CPU time per request is reported too (from
   /proc), the figure that does not depend on wrk.

Targets: single-connection /recommend p99 ≤ 10 ms, and /recommend at ≥ 0.5 x the requests per
second of /health (the model should cost no more than the HTTP stack does).

wrk runs on the same two cores as the server, so the throughput is a lower bound for a machine
where the load comes over the network.

    python bench/serving_load.py [--requests 2000] [--duration 10] [--rounds 5] [--omp-threads N]
        [--index auto|flat|hnsw|ivf] [--name NAME]
"""

from __future__ import annotations

import os

# The client scores nothing, but the server inherits the environment: one BLAS thread there.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    WORK,
    Catalog,
    console,
    percentiles_ms,
    prepare_catalog,
    table,
    verdict,
    warn_if_busy,
    write_results,
)
from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.training import train

NAME = "serving_load"
P99_TARGET_MS = 10.0
RPS_RATIO_TARGET = 0.5
WARMUP = 100
LUA_USER_IDS = 5_000  # enough that requests do not repeat a few hot users
WRK_MARKER = "WRKJSON "

# wrk's done() hook hands over exact percentiles in microseconds; parsing its human summary
# ("1.23ms", "812.00us") would lose precision and break on unit changes.
LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d,'
    .. ' "read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d,'
    .. ' "p75": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}}\\n',
    "WRKJSON ", summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""

# Each wrk thread runs its own Lua state; setup() numbers them so their random user sequences
# differ instead of replaying the same one.
LUA_THREAD_SEED = """
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("thread_seed", counter)
end
init = function(args)
  math.randomseed(7919 * thread_seed)
end
"""
LUA_RANDOM_ID = (
    """
local ids = {%s}
"""
    + LUA_THREAD_SEED
    + """
request = function()
  return wrk.format("GET", "%s" .. ids[math.random(#ids)])
end
"""
)
# the path's query up to the user id, then a random known user
LUA_RANDOM_USER = LUA_RANDOM_ID.replace('"%s" ..', '"%s?k=10&user_id=" ..')


def free_port() -> int:
    # the port is released before the server binds it; a race is possible but harmless here
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli_path() -> str:
    beside = Path(sys.executable).with_name("recsys-lite")
    found = str(beside) if beside.is_file() else shutil.which("recsys-lite")
    if not found:
        raise SystemExit("recsys-lite is not installed in this environment (pip install -e .)")
    return found


BENCH_KEY = "bench-admin-key"
AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


@contextlib.contextmanager
def running_server(
    artifact: Path,
    db: Path,
    port: int,
    log: Path,
    omp_threads: int | None,
    workers: int = 1,
    *,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a child process (with ``env`` added to its environment), stopped on the
    way out whatever happened.

    Keys and limits are on, as in production: the rate limiter runs on every request, with a
    budget no load generator on this machine reaches, so its cost is measured, not its refusals.
    """
    environment = {
        **os.environ, "LOG_LEVEL": "WARNING", "ADMIN_API_KEY": BENCH_KEY,
        "RATE_LIMIT_PER_IP": "1000000", **(env or {}),
    }  # fmt: skip
    if omp_threads:
        environment["OMP_NUM_THREADS"] = str(omp_threads)
    command = [cli_path(), "serve", "--model-dir", str(artifact), "--db", str(db)]
    command += ["--port", str(port), "--workers", str(workers)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=environment
        )
        try:
            wait_until_healthy(process, port, log)
            yield process
        finally:
            stop(process)


def index_variant(catalog: Catalog, kind: str) -> Path:
    """The shared catalog's ALS recipe trained with another index kind (built once)."""
    path = catalog.folder / f"artifact-{kind}"
    base = catalog.artifact / "manifest.json"
    manifest = path / "manifest.json"
    if manifest.is_file() and manifest.stat().st_mtime >= base.stat().st_mtime:
        return path
    console.print(f"training the same ALS recipe with a {kind} index (once)...")
    params = json.loads(base.read_text())["params"]
    train(
        Store(catalog.db),
        "als",
        path,
        params=params,
        test_size=0,
        settings=Settings(faiss_index=kind),
        show_progress=False,
    )
    return path


def wait_until_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 120  # loading the artifact and catalog takes seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"server not healthy after 120 s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()  # uvicorn shuts down gracefully on SIGTERM
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def sequential_latency(client: httpx.Client, paths: list[str], label: str) -> dict[str, Any]:
    """Per-request wall time over one kept-alive connection, as one shopper's browser sees it."""
    for path in paths[:WARMUP]:  # first requests pay for imports, caches and connection setup
        client.get(path).raise_for_status()
    seconds: list[float] = []
    for path in paths[WARMUP:]:
        started = time.perf_counter()
        response = client.get(path)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return {"endpoint": label, "requests": len(seconds), "latency_ms": percentiles_ms(seconds)}


def required_wrk() -> str:
    """wrk's path; the load benchmarks cannot run without it."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    return wrk


@dataclass(frozen=True)
class LoadRun:
    """What every wrk benchmark on the 100k-item shop starts from."""

    args: argparse.Namespace
    wrk: str
    start_load: float
    catalog: Catalog
    folder: Path  # its own scratch folder under bench/work


def start_load_run(
    doc: str, name: str, duration: int, rounds: int, parser: argparse.ArgumentParser | None = None
) -> LoadRun:
    """Parse ``--duration``, ``--rounds`` and ``--name`` (beside the caller's own options in
    ``parser``), find wrk, note the load, and prepare the shop and a scratch folder."""
    parser = parser or argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--duration", type=int, default=duration)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--name", default=name)
    args = parser.parse_args()
    wrk = required_wrk()
    start_load = warn_if_busy()
    catalog = prepare_catalog()
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    return LoadRun(args, wrk, start_load, catalog, folder)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, url: str, script: Path, duration: int, label: str) -> dict[str, Any]:
    command = [wrk, "-t2", "-c32", f"-d{duration}s", "--latency", "-s", str(script), url]
    console.print(f"wrk {label}: {' '.join(command[1:])}")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith(WRK_MARKER))
    stats: dict[str, Any] = json.loads(line[len(WRK_MARKER) :])
    stats["endpoint"] = label
    stats["requests_per_second"] = round(stats["requests"] / (stats["duration_us"] / 1e6), 1)
    stats["non_2xx"] = stats["errors"]["status"]
    stats["socket_errors"] = sum(v for k, v in stats["errors"].items() if k != "status")
    stats["wrk_output"] = done.stdout.replace(line, "").strip()
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000, help="sequential requests")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved /health, /recommend pairs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--omp-threads", type=int, default=None, help="OMP_NUM_THREADS for the server"
    )
    parser.add_argument("--rebuild", action="store_true", help="regenerate data and artifact")
    parser.add_argument(
        "--index",
        choices=("auto", "flat", "hnsw", "ivf"),
        default="auto",
        help="serve an artifact trained with FAISS_INDEX=this (auto: exact up to 200k items)",
    )
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()

    start_load = warn_if_busy()
    catalog = prepare_catalog(rebuild=args.rebuild)
    artifact = catalog.artifact if args.index == "auto" else index_variant(catalog, args.index)
    manifest = json.loads((artifact / "manifest.json").read_text())
    with np.load(artifact / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(known_users, size=args.requests + WARMUP).tolist()
    folder = WORK / NAME
    folder.mkdir(parents=True, exist_ok=True)

    wrk = shutil.which("wrk")
    if wrk is None:
        console.print("[yellow]wrk not found: install it (apt-get install -y wrk) for part b[/]")
    health_lua, recommend_lua = folder / "health.lua", folder / "recommend.lua"
    lua_ids = rng.choice(known_users, size=min(LUA_USER_IDS, len(known_users)), replace=False)
    quoted_ids = ", ".join(f'"{u}"' for u in lua_ids.tolist())
    for script, path in ((health_lua, "/health"), (recommend_lua, "/recommend")):
        script.write_text(LUA_RANDOM_USER % (quoted_ids, path) + LUA_DONE)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sequential: list[dict[str, Any]] = []
    loaded: list[dict[str, Any]] = []
    with running_server(
        artifact, catalog.db, port, folder / "server.log", args.omp_threads
    ) as server:
        with httpx.Client(base_url=base, timeout=10) as client:
            for label, extra in (
                ("/recommend", ""),
                ("/recommend use_faiss=false", "&use_faiss=false"),
            ):
                paths = [f"/recommend?k=10&user_id={u}{extra}" for u in picked]
                sequential.append(sequential_latency(client, paths, label))
            # shoppers the model has never seen get the popular fallback
            newcomers = [f"/recommend?k=10&user_id=newcomer-{n}" for n in range(len(picked))]
            sequential.append(sequential_latency(client, newcomers, "/recommend unknown user"))
            sequential.append(sequential_latency(client, ["/health"] * len(picked), "/health"))
        if wrk is not None:
            for round_number in range(1, args.rounds + 1):
                for path, script in (("/health", health_lua), ("/recommend", recommend_lua)):
                    cpu_before = process_cpu_seconds(server.pid)
                    stats = run_wrk(wrk, f"{base}{path}", script, args.duration, path)
                    cpu_ms = (process_cpu_seconds(server.pid) - cpu_before) * 1000
                    stats["server_cpu_ms_per_request"] = round(
                        cpu_ms / max(stats["requests"], 1), 4
                    )
                    stats["round"] = round_number
                    loaded.append(stats)

    p99 = sequential[0]["latency_ms"]["p99"]
    console.print(
        table(
            f"single connection, {args.requests:,} sequential requests (ms)",
            ["endpoint", "p50", "p95", "p99", "mean", f"target p99 ≤ {P99_TARGET_MS:.0f} ms"],
            [
                [
                    s["endpoint"],
                    s["latency_ms"]["p50"],
                    s["latency_ms"]["p95"],
                    s["latency_ms"]["p99"],
                    s["latency_ms"]["mean"],
                    verdict(p99 <= P99_TARGET_MS) if n == 0 else "",
                ]
                for n, s in enumerate(sequential)
            ],
        )
    )
    ratio = None
    ratios: list[float] = []
    if loaded:
        console.print(
            table(
                f"wrk -t2 -c32 -d{args.duration}s, {args.rounds} interleaved rounds (latency ms)",
                [
                    "round",
                    "endpoint",
                    "requests/s",
                    "server CPU ms/request",
                    "p50",
                    "p90",
                    "p99",
                    "max",
                    "non-2xx",
                    "socket errors",
                ],
                [
                    [
                        w["round"],
                        w["endpoint"],
                        w["requests_per_second"],
                        w["server_cpu_ms_per_request"],
                        w["latency_us"]["p50"] / 1000,
                        w["latency_us"]["p90"] / 1000,
                        w["latency_us"]["p99"] / 1000,
                        w["latency_us"]["max"] / 1000,
                        w["non_2xx"],
                        w["socket_errors"],
                    ]
                    for w in loaded
                ],
            )
        )
        ratios = [
            recommend["requests_per_second"] / health["requests_per_second"]
            for health, recommend in zip(loaded[0::2], loaded[1::2], strict=True)
        ]
        ratio = float(np.median(ratios))
        met = verdict(ratio >= RPS_RATIO_TARGET)
        console.print(
            f"recommend_rps / health_rps per round: {', '.join(f'{r:.3f}' for r in ratios)};"
            f" median {ratio:.3f} (target ≥ {RPS_RATIO_TARGET}) {met}"
        )

    write_results(
        args.name,
        {
            "artifact": {
                "model_type": manifest["model_type"],
                "n_items": manifest["n_items"],
                "n_users": manifest["n_users"],
                "factors": manifest["params"].get("factors"),
                "indexes": manifest["indexes"],
            },
            "server": {
                "workers": 1,
                "omp_num_threads": args.omp_threads,
                "index": args.index,
                "faiss_ef_search": Settings().faiss_ef_search,
            },
            "wrk_rounds": args.rounds,
            "wrk_seconds_per_run": args.duration,
            "load_average_1m_at_start": start_load,
            "targets": {"p99_ms": P99_TARGET_MS, "rps_ratio": RPS_RATIO_TARGET},
            "single_connection": sequential,
            "single_connection_p99_met": p99 <= P99_TARGET_MS,
            "wrk": loaded,
            "recommend_to_health_rps_ratio_per_round": [round(r, 3) for r in ratios],
            "recommend_to_health_rps_ratio": None if ratio is None else round(ratio, 3),
            "rps_ratio_met": None if ratio is None else ratio >= RPS_RATIO_TARGET,
        },
    )


if __name__ == "__main__":
    main()
