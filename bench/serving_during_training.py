"""Does the API keep serving while a training job (``POST /training``) fits a model?

Serves the 100k-item, 64-factor ALS artifact shared with serving_load (built on first use) from
two ``recsys-lite serve`` processes, each over its own copy of the store and the artifact: one
starts its training jobs at the API's own priority (``TRAINING_JOB_NICE=0``), the other niced
(``TRAINING_JOB_NICE=10``, the default). Each round, for each server in turn (the order
alternates between rounds, so a drift in the shared machine's speed falls on both alike):

1. idle: /recommend single-connection latency (``--requests`` sequential requests over one
   kept-alive connection, random known users) and throughput with wrk -t2 -c32;
2. ``POST /training`` (admin key) retraining the served recipe (ALS, the artifact's params) on
   the 1.5M events; ``GET /training/{id}`` is polled until the job reaches its fit stage (the
   gate's fits, then the final one), then the same two measurements run while it fits; the
   job's stage is read again afterwards, and a window the job did not cover to the end is
   flagged (``overlapped_fit: false``);
3. the job is stopped (SIGTERM to its process id): the benchmark measures serving beside a
   fit, not the job's duration, and a finished job would swap its model in mid-round.

Reported per server: the idle and during-training figures, their ratios per round (the median
is the headline), the CPU the job and the server took during the wrk window, and the job's
niceness. On two cores a fitting job takes CPU whatever its priority: the question is how
much of it the API keeps. The load average is recorded at start, end and around every phase
(the machine is shared with other work).

    python bench/serving_during_training.py [--rounds 3] [--requests 600] [--duration 8]
        [--nice 0,10]
"""

from __future__ import annotations

import os

# The client scores nothing, but the servers inherit the environment: one BLAS thread there
# (the job's fit runs implicit's own thread pool, THREADS, whatever this says).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import signal
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    WORK,
    console,
    load_average,
    prepare_catalog,
    table,
    warn_if_busy,
    write_results,
)
from serving_load import (
    AUTH,
    LUA_DONE,
    LUA_RANDOM_USER,
    LUA_USER_IDS,
    WARMUP,
    free_port,
    process_cpu_seconds,
    required_wrk,
    run_wrk,
    running_server,
    sequential_latency,
)

NAME = "serving_during_training"
FIT_STAGES = ("gate", "training")  # the stages whose work is fitting models
JOB_START_TIMEOUT = 300  # seconds from POST to the fit stage (reading 1.5M events included)


def copy_shop(source_db: Path, source_artifact: Path, folder: Path) -> tuple[Path, Path]:
    """A private store and artifact: jobs write beside the store and publish into the artifact."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    db, model = folder / "store.db", folder / "model"
    shutil.copy(source_db, db)
    shutil.copytree(source_artifact.resolve(), model)
    return db, model


def measure(
    client: httpx.Client, base: str, pid: int, wrk: str, script: Path, paths: list[str],
    duration: int, label: str,
) -> dict[str, Any]:  # fmt: skip
    load_before = load_average()
    sequential = sequential_latency(client, paths, label)
    cpu_before = process_cpu_seconds(pid)
    stats = run_wrk(wrk, f"{base}/recommend", script, duration, label)
    server_cpu = process_cpu_seconds(pid) - cpu_before
    return {
        "single_connection_ms": sequential["latency_ms"],
        "wrk": {
            "requests_per_second": stats["requests_per_second"],
            "latency_ms": {k: stats["latency_us"][k] / 1000 for k in ("p50", "p90", "p99")},
            "non_2xx": stats["non_2xx"],
            "socket_errors": stats["socket_errors"],
            "server_cpu_share": round(server_cpu / (stats["duration_us"] / 1e6), 3),
        },
        "load_average_1m": [load_before, load_average()],
    }


def wait_for_fit(client: httpx.Client, job: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    while True:
        status: dict[str, Any] = client.get(f"/training/{job}", headers=AUTH).json()
        if status["state"] not in ("queued", "running"):
            raise SystemExit(f"the job ended before its fit stage: {status}")
        if status["stage"].startswith(FIT_STAGES):
            return status, time.monotonic() - started
        if time.monotonic() - started > JOB_START_TIMEOUT:
            raise SystemExit(f"the job did not reach its fit stage: {status}")
        time.sleep(0.2)


def stop_job(pid: int) -> None:
    """SIGTERM to the job this run started, then wait until its process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        # a zombie is gone for our purpose: the API reaps its job processes
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.1)


def during_job(
    client: httpx.Client, base: str, pid: int, wrk: str, script: Path, paths: list[str],
    duration: int, job_request: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    started = client.post("/training", json=job_request, headers=AUTH)
    if started.status_code != 202:
        raise SystemExit(f"POST /training answered {started.status_code}: {started.text}")
    job, job_pid = started.json()["id"], int(started.json()["pid"])
    status, seconds_to_fit = wait_for_fit(client, job)
    niceness = os.getpriority(os.PRIO_PROCESS, job_pid)
    job_cpu_before, wall_before = process_cpu_seconds(job_pid), time.monotonic()
    try:
        result = measure(client, base, pid, wrk, script, paths, duration, "during training")
        job_cpu = process_cpu_seconds(job_pid) - job_cpu_before
        after: dict[str, Any] = client.get(f"/training/{job}", headers=AUTH).json()
    finally:
        stop_job(job_pid)
    result["job"] = {
        "id": job,
        "niceness": niceness,
        "seconds_from_post_to_fit": round(seconds_to_fit, 1),
        "stage_at_start": status["stage"],
        "stage_at_end": after["stage"],
        "state_at_end": after["state"],
        "cpu_share": round(job_cpu / (time.monotonic() - wall_before), 3),
    }
    result["overlapped_fit"] = after["state"] == "running" and after["stage"].startswith(FIT_STAGES)
    return result


def ratios(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """During / idle per round, and the median over rounds."""
    per_round = {
        "rps": [p["during"]["wrk"]["requests_per_second"] / p["idle"]["wrk"]["requests_per_second"]
                for p in pairs],
        "single_p50": [p["during"]["single_connection_ms"]["p50"]
                       / p["idle"]["single_connection_ms"]["p50"] for p in pairs],
        "single_p99": [p["during"]["single_connection_ms"]["p99"]
                       / p["idle"]["single_connection_ms"]["p99"] for p in pairs],
    }  # fmt: skip
    return {
        "per_round": {k: [round(v, 3) for v in values] for k, values in per_round.items()},
        "median": {k: round(statistics.median(values), 3) for k, values in per_round.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=600, help="sequential requests a phase")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk a phase")
    parser.add_argument("--nice", default="0,10", help="TRAINING_JOB_NICE of each server")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start_load = warn_if_busy()
    wrk = required_wrk()
    catalog = prepare_catalog()
    manifest = json.loads((catalog.artifact / "manifest.json").read_text())
    job_request = {"model": manifest["model_type"], "params": manifest["params"]}
    with np.load(catalog.artifact / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
    rng = np.random.default_rng(args.seed)
    paths = [
        f"/recommend?k=10&user_id={u}" for u in rng.choice(known_users, args.requests + WARMUP)
    ]
    folder = WORK / NAME
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "recommend.lua"
    lua_ids = rng.choice(known_users, size=min(LUA_USER_IDS, len(known_users)), replace=False)
    quoted = ", ".join(f'"{u}"' for u in lua_ids.tolist())
    script.write_text(LUA_RANDOM_USER % (quoted, "/recommend") + LUA_DONE)

    nices = [int(n) for n in args.nice.split(",")]
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in nices}
    with ExitStack() as stack:
        servers: dict[int, tuple[str, int, httpx.Client]] = {}
        for nice in nices:
            db, model = copy_shop(catalog.db, catalog.artifact, folder / f"nice{nice}")
            port = free_port()
            os.environ["TRAINING_JOB_NICE"] = str(nice)  # read by the server it starts
            server = stack.enter_context(
                running_server(model, db, port, folder / f"server-nice{nice}.log", None)
            )
            base = f"http://127.0.0.1:{port}"
            client = stack.enter_context(httpx.Client(base_url=base, timeout=30))
            servers[nice] = (base, server.pid, client)
        for round_number in range(1, args.rounds + 1):
            order = nices if round_number % 2 else nices[::-1]
            for nice in order:
                base, pid, client = servers[nice]
                console.print(f"round {round_number}, TRAINING_JOB_NICE={nice}: idle...")
                idle = measure(client, base, pid, wrk, script, paths, args.duration, "idle")
                console.print(f"round {round_number}, TRAINING_JOB_NICE={nice}: during a job...")
                during = during_job(
                    client, base, pid, wrk, script, paths, args.duration, job_request
                )
                results[nice].append({"round": round_number, "idle": idle, "during": during})

    rows: list[list[Any]] = []
    for nice, pairs in results.items():
        for p in pairs:
            for phase in ("idle", "during"):
                m = p[phase]
                job = m.get("job", {})
                rows.append([
                    nice, p["round"], phase, m["single_connection_ms"]["p50"],
                    m["single_connection_ms"]["p99"], m["wrk"]["requests_per_second"],
                    m["wrk"]["latency_ms"]["p99"], m["wrk"]["server_cpu_share"],
                    job.get("cpu_share", ""), job.get("stage_at_end", "").split(":")[0],
                    "" if phase == "idle" else ("yes" if m["overlapped_fit"] else "NO"),
                    m["load_average_1m"][0],
                ])  # fmt: skip
    console.print(
        table(
            f"/recommend idle and while a training job fits ({args.requests} sequential requests;"
            f" wrk -t2 -c32 -d{args.duration}s)",
            ["job nice", "round", "phase", "1-conn p50 ms", "1-conn p99 ms", "32-conn req/s",
             "32-conn p99 ms", "server CPU", "job CPU", "job stage after", "overlapped fit",
             "load"],
            rows,
        )
    )  # fmt: skip
    summary = {str(nice): ratios(pairs) for nice, pairs in results.items()}
    for label, ratio in summary.items():
        median = ratio["median"]
        console.print(
            f"TRAINING_JOB_NICE={label}: during/idle medians: throughput {median['rps']:.2f}x,"
            f" 1-conn p50 {median['single_p50']:.2f}x, p99 {median['single_p99']:.2f}x"
        )
    write_results(
        NAME,
        {
            "artifact": {
                "model_type": manifest["model_type"],
                "n_items": manifest["n_items"],
                "n_users": manifest["n_users"],
                "params": manifest["params"],
            },
            "job_request": job_request,
            "rounds": args.rounds,
            "sequential_requests": args.requests,
            "wrk_seconds": args.duration,
            "load_average_1m_at_start": start_load,
            "all_windows_overlapped_fit": all(
                p["during"]["overlapped_fit"] for pairs in results.values() for p in pairs
            ),
            "by_job_nice": {str(nice): pairs for nice, pairs in results.items()},
            "during_over_idle": summary,
        },
    )


if __name__ == "__main__":
    main()
