"""Does a serving process stay healthy and flat in memory under hours of mixed traffic?

Serves ALS on the demo shop (keys, limits and the rate limiter on) and, for ``--minutes``,
sends reads and writes at a fixed rate: ``/recommend`` and ``/similar-items`` for known and
unknown shoppers, and batches of server-side events from ever new shoppers (the worst case for
per-shopper state; ``ONLINE_MAX_USERS`` is 20,000 here so that the bound is reached within the
warm-up, as the default 100,000 would be on a shop with more traffic). Samples the server's
resident memory every few seconds. Reports failed
requests (anything but a 2xx) and RSS growth from the end of the warm-up to the end; the
targets are 0 failures and growth under 10%.

    python bench/soak.py [--minutes 30] [--warmup-minutes 8] [--reads-per-second 40]
                         [--event-batches-per-second 6] [--batch-size 100]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from _common import console, empty_work_folder, table, verdict, write_results
from recsys_lite.data import demo
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.training import train
from serving_load import AUTH, free_port, running_server

NAME = "soak"
GROWTH_TARGET = 0.10


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def at_fixed_rate(rate: float, stop: threading.Event, action: object) -> None:
    """Call ``action(n)`` ``rate`` times a second until ``stop``, without catching up bursts."""
    assert callable(action)
    interval = 1.0 / rate
    next_at = time.monotonic()
    n = 0
    while not stop.is_set():
        action(n)
        n += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            next_at = time.monotonic()  # behind: keep the rate, drop the backlog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=8.0)
    parser.add_argument("--reads-per-second", type=float, default=40.0)
    parser.add_argument("--event-batches-per-second", type=float, default=6.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    args = parser.parse_args()

    folder = empty_work_folder(NAME)
    console.print("demo shop, ingest, ALS (about a minute)...")
    events, items = demo.write(demo.generate(), folder / "demo")
    db = folder / "store.db"
    ingest(Store(db), events, items, show_progress=False)
    train(Store(db), "als", folder / "model", test_size=0, show_progress=False)
    with np.load(folder / "model" / "model.npz", allow_pickle=False) as arrays:
        users = arrays["user_ids"].astype(str).tolist()
        item_ids = arrays["item_ids"].astype(str).tolist()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    samples: list[tuple[float, int]] = []
    posted_events = 0

    def record(kind: str, response: httpx.Response | None) -> None:
        ok = response is not None and response.is_success
        with lock:
            outcomes[f"{kind} {'ok' if ok else 'failed'}"] += 1

    os.environ["ONLINE_MAX_USERS"] = "20000"
    with running_server(folder / "model", db, port, folder / "server.log", None) as server:
        read_client = httpx.Client(base_url=base, timeout=10)
        write_client = httpx.Client(base_url=base, timeout=30, headers=AUTH)
        rng = np.random.default_rng(0)

        def read(n: int) -> None:
            if n % 4 == 3:
                path, params = "/similar-items", {"item_id": item_ids[n % len(item_ids)]}
            else:
                user = users[n % len(users)] if n % 4 else f"visitor-{n}"
                path, params = "/recommend", {"user_id": user}
            try:
                record("read", read_client.get(path, params=params))
            except httpx.HTTPError:
                record("read", None)

        def write(n: int) -> None:
            nonlocal posted_events
            now = int(time.time())
            picks = rng.integers(0, len(item_ids), args.batch_size)
            batch = [
                {"user_id": f"soak-{n}-{j % 10}", "item_id": item_ids[i], "ts": now,
                 "event_type": "purchase" if j % 7 == 0 else "view"}
                for j, i in enumerate(picks.tolist())
            ]  # fmt: skip
            try:
                response = write_client.post("/events", json={"events": batch})
            except httpx.HTTPError:
                response = None
            record("write", response)
            if response is not None and response.is_success:
                posted_events += len(batch)

        threads = [
            threading.Thread(target=at_fixed_rate, args=(args.reads_per_second, stop, read)),
            threading.Thread(
                target=at_fixed_rate, args=(args.event_batches_per_second, stop, write)
            ),
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        end = started + args.minutes * 60
        try:
            while time.monotonic() < end:
                samples.append((time.monotonic() - started, rss_bytes(server.pid)))
                minute = samples[-1][0] / 60
                console.print(
                    f"{minute:5.1f} min  RSS {samples[-1][1] / 2**20:7.1f} MiB  "
                    f"events {posted_events:,}  {dict(outcomes)}",
                    highlight=False,
                )
                time.sleep(args.sample_seconds)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            read_client.close()
            write_client.close()

    warm = [rss for t, rss in samples if t >= args.warmup_minutes * 60]
    after_warmup, final = warm[0], warm[-1]
    growth = (final - after_warmup) / after_warmup
    failed = sum(count for key, count in outcomes.items() if key.endswith("failed"))
    console.print(
        table(
            f"soak: {args.minutes:g} minutes, {posted_events:,} events posted",
            ["figure", "value", "target"],
            [
                ["failed requests", failed, "0 " + verdict(failed == 0)],
                ["RSS after warm-up (MiB)", round(after_warmup / 2**20, 1), ""],
                ["RSS at the end (MiB)", round(final / 2**20, 1), ""],
                ["growth", f"{growth:+.1%}", f"< 10% {verdict(growth < GROWTH_TARGET)}"],
                ["peak RSS (MiB)", round(max(r for _, r in samples) / 2**20, 1), ""],
            ],
        )
    )
    write_results(
        NAME,
        {
            "args": vars(args),
            "events_posted": posted_events,
            "requests": dict(outcomes),
            "failed_requests": failed,
            "rss_after_warmup_bytes": after_warmup,
            "rss_final_bytes": final,
            "rss_growth": growth,
            "rss_samples": [[round(t, 1), rss] for t, rss in samples],
            "targets_met": failed == 0 and growth < GROWTH_TARGET,
        },
    )


if __name__ == "__main__":
    main()
