"""The scale benchmark's serving stage: start-up, memory and /recommend under load.

Reuses bench/serving_load.py's load helpers; the server is one ``recsys-lite serve`` process
on the scale artifact, from serving_load's running_server (keys and limits on, as in
production), its start-up timed from the start to the first healthy answer.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import console
from serving_load import (
    LUA_DONE,
    LUA_RANDOM_USER,
    free_port,
    process_cpu_seconds,
    run_wrk,
    running_server,
    sequential_latency,
)

LUA_IDS = 5_000


def _status_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def _wrk(
    wrk: str, base: str, folder: Path, ids: list[str], label: str, duration: int, pid: int
) -> dict[str, Any]:
    script = folder / f"{label}.lua"
    quoted = ", ".join(f'"{u}"' for u in ids)
    script.write_text(LUA_RANDOM_USER % (quoted, "/recommend") + LUA_DONE)
    cpu_before = process_cpu_seconds(pid)
    stats = run_wrk(wrk, f"{base}/recommend", script, duration, f"/recommend {label}")
    cpu_ms = (process_cpu_seconds(pid) - cpu_before) * 1000
    stats["server_cpu_ms_per_request"] = round(cpu_ms / max(stats["requests"], 1), 4)
    stats.pop("wrk_output", None)
    return stats


def measure_serving(
    artifact: Path, db: Path, folder: Path, *, duration: int, requests: int
) -> dict[str, Any]:
    with np.load(artifact / "model.npz", allow_pickle=False) as arrays:
        known = arrays["user_ids"].astype(str)
    rng = np.random.default_rng(0)
    picked = rng.choice(known, size=requests + 100).tolist()
    newcomers = [f"newcomer-{n}" for n in range(requests + 100)]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "serve.log"
    load_before = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    with running_server(artifact, db, port, log, None) as process:
        startup = time.perf_counter() - started
        memory_at_start = _status_mb(process.pid)
        console.print(f"server healthy after {startup:.1f} s, {memory_at_start}")
        with httpx.Client(base_url=base, timeout=30) as client:
            sequential = [
                sequential_latency(
                    client, [f"/recommend?k=10&user_id={u}" for u in picked], "known user"
                ),
                sequential_latency(
                    client, [f"/recommend?k=10&user_id={u}" for u in newcomers],
                    "unknown user",
                ),
            ]  # fmt: skip
        loaded = []
        wrk = shutil.which("wrk")
        if wrk is not None:
            known_ids = rng.choice(known, size=LUA_IDS, replace=False).tolist()
            loaded.append(_wrk(wrk, base, folder, known_ids, "known", duration, process.pid))
            unknown_ids = [f"stranger-{n}" for n in range(LUA_IDS)]
            loaded.append(_wrk(wrk, base, folder, unknown_ids, "unknown", duration, process.pid))
        memory_after = _status_mb(process.pid)
    return {
        "artifact": str(artifact.name),
        "startup_seconds": round(startup, 2),
        "rss_mb_after_startup": memory_at_start.get("VmRSS"),
        "rss_mb_after_load": memory_after.get("VmRSS"),
        "peak_rss_mb": memory_after.get("VmHWM"),
        "single_connection": sequential,
        "wrk": loaded,
        "wrk_seconds_per_run": duration,
        "load_average_1m_before": load_before,
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
