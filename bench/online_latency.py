"""How long from POST /events to a changed /recommend, with other traffic going on?

Serves the 100k-item ALS artifact shared with serving_load (built on first use). While wrk
keeps /recommend busy in the background (random known users, 8 connections), a client picks
a known user, reads their top 10, posts a purchase of the first item, and then asks again
until the answer no longer contains it. The time from sending the event to receiving the
changed answer is the figure; the target is p99 ≤ 1 s.

    python bench/online_latency.py [--trials 300] [--background-connections 8]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import time

import httpx
import numpy as np

from _common import (
    console,
    empty_work_folder,
    percentiles_ms,
    prepare_catalog,
    table,
    verdict,
    write_results,
)
from serving_load import AUTH, LUA_DONE, LUA_RANDOM_USER, free_port, running_server

NAME = "online_latency"
P99_TARGET_MS = 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--background-connections", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    catalog = prepare_catalog()
    with np.load(catalog.artifact / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
    rng = np.random.default_rng(args.seed)
    users = rng.choice(known_users, size=args.trials, replace=False).tolist()
    folder = empty_work_folder(NAME)
    # a private copy of the store: this benchmark writes events into it
    db = folder / "store.db"
    shutil.copy(catalog.db, db)
    lua = folder / "recommend.lua"
    background_ids = rng.choice(known_users, size=2_000, replace=False).tolist()
    quoted_ids = ", ".join(f'"{u}"' for u in background_ids)
    lua.write_text(LUA_RANDOM_USER % (quoted_ids, "/recommend") + LUA_DONE)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    wrk = shutil.which("wrk")
    seconds: list[float] = []
    polls: list[int] = []
    with running_server(catalog.artifact, db, port, folder / "server.log", None):
        background = None
        if wrk is not None:
            background = subprocess.Popen(
                [wrk, "-t1", f"-c{args.background_connections}", "-d600s", "-s", str(lua),
                 f"{base}/recommend"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        else:
            console.print("[yellow]wrk not found: measuring without background load[/]")
        try:
            time.sleep(2.0)
            with httpx.Client(base_url=base, timeout=10) as client:
                for user in users:
                    before = client.get("/recommend", params={"user_id": user}).json()
                    bought = before["recommendations"][0]["item_id"]
                    started = time.perf_counter()
                    client.post(
                        "/events",
                        json={"user_id": user, "item_id": bought, "event_type": "purchase"},
                        headers=AUTH,
                    ).raise_for_status()
                    n = 0
                    while True:
                        n += 1
                        answer = client.get("/recommend", params={"user_id": user}).json()
                        if bought not in {r["item_id"] for r in answer["recommendations"]}:
                            break
                        if time.perf_counter() - started > 10:
                            raise SystemExit(f"{user}: the answer never changed")
                    seconds.append(time.perf_counter() - started)
                    polls.append(n)
        finally:
            if background is not None:
                background.terminate()
                background.wait(timeout=10)

    latency = percentiles_ms(seconds)
    met = latency["p99"] <= P99_TARGET_MS
    console.print(
        table(
            f"POST /events → changed /recommend, {len(seconds)} trials, "
            f"{args.background_connections if wrk else 0} background connections (ms)",
            ["p50", "p95", "p99", "mean", "answers read until changed (max)", "target p99 ≤ 1 s"],
            [
                [
                    latency["p50"],
                    latency["p95"],
                    latency["p99"],
                    latency["mean"],
                    max(polls),
                    verdict(met),
                ]
            ],
        )
    )
    write_results(
        NAME,
        {
            "catalog_items": json.loads((catalog.artifact / "manifest.json").read_text())[
                "n_items"
            ],
            "trials": len(seconds),
            "background_connections": args.background_connections if wrk else 0,
            "event_to_changed_answer_ms": latency,
            "max_reads_until_changed": max(polls),
            "target_p99_ms": P99_TARGET_MS,
            "target_met": met,
        },
    )


if __name__ == "__main__":
    main()
