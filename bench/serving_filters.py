"""How fast does a shop's page request answer: a category filter, diversity and explanations,
and a filter that leaves 1% of the catalog?

Same 100k-item ALS artifact (HNSW) and server as serving_load.py, and the same machinery:

a) single-connection latency, client-side over one kept-alive connection, ~2,000 sequential
   requests for random known users, for: the plain /recommend (this run's baseline); with
   diversity_lambda=0.8 alone (what a default below 1 would cost); the page request: one
   category (the store's median-sized one, 3% of the served items), diversity_lambda=0.8 and
   explain=true; a filter leaving 1% of the catalog (a category and a price ceiling); and
   /health. Every answer of the 1% filter is checked to hold k items that pass it.
b) wrk -t2 -c32 in --rounds interleaved triples: /health, the page request of (a), and the
   plain /recommend, so each ratio compares runs a few seconds apart on the shared machine.

Targets: the page request p99 ≤ 10 ms on one connection and ≥ 0.35 x /health's requests/s
under 32 connections; the 1% filter answers k items with p99 ≤ 15 ms.

    SEARCH_INDEX=off python bench/serving_filters.py [--requests 2000] [--duration 10]
        [--rounds 5] [--name NAME]

(SEARCH_INDEX=off: the shared catalog is built without a text index, and the server then loads
no sentence model; /search is not measured here.)
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb
import httpx
import numpy as np

from _common import WORK, console, prepare_catalog, table, verdict, warn_if_busy, write_results
from serving_load import (
    LUA_DONE,
    LUA_RANDOM_ID,
    LUA_USER_IDS,
    WARMUP,
    free_port,
    process_cpu_seconds,
    run_wrk,
    running_server,
    sequential_latency,
)

NAME = "serving_filters"
K = 10
PAGE_P99_TARGET_MS = 10.0
NARROW_P99_TARGET_MS = 15.0
RPS_RATIO_TARGET = 0.35
NARROW_SHARE = 0.01


def filters(db: Path) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The page's filter (the median-sized category) and one leaving about 1% of the catalog
    (a category and the price under which 1% of all items of it fall), with its share."""
    with duckdb.connect(str(db), read_only=True) as con:
        total = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
        sizes = con.execute(
            "SELECT category, count(*) AS n FROM items GROUP BY category ORDER BY n"
        ).fetchall()
        category = sizes[len(sizes) // 2][0]
        want = int(NARROW_SHARE * total)
        narrow_category = next(c for c, n in reversed(sizes) if n >= want)
        prices = sorted(
            p
            for (p,) in con.execute(
                "SELECT price FROM items WHERE category = ? AND price IS NOT NULL",
                [narrow_category],
            ).fetchall()
        )
    ceiling = prices[want - 1]
    narrow_count = sum(1 for p in prices if p <= ceiling)
    page = {"category": category, "diversity_lambda": 0.8, "explain": "true"}
    narrow = {"category": narrow_category, "max_price": ceiling}
    return page, narrow, narrow_count / total


def checked(client: httpx.Client, path: str, narrow: dict[str, Any]) -> None:
    """The 1% filter still answers k items, each within it."""
    body = client.get(path).json()
    items = body["recommendations"]
    assert len(items) == K, f"{len(items)} items for {path}"
    for item in items:
        assert item["category"] == narrow["category"] and item["price"] <= narrow["max_price"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()

    start_load = warn_if_busy()
    catalog = prepare_catalog()
    with np.load(catalog.artifact / "model.npz", allow_pickle=False) as arrays:
        known_users = arrays["user_ids"].astype(str)
    page, narrow, narrow_share = filters(catalog.db)
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(known_users, size=args.requests + WARMUP).tolist()
    folder = WORK / NAME
    folder.mkdir(parents=True, exist_ok=True)

    queries = {
        "/recommend": "/recommend?" + urlencode({"k": K}) + "&user_id=",
        "/recommend diversity_lambda=0.8": "/recommend?k=10&diversity_lambda=0.8&user_id=",
        "/recommend page": "/recommend?" + urlencode({"k": K, **page}) + "&user_id=",
        "/recommend 1% filter": "/recommend?" + urlencode({"k": K, **narrow}) + "&user_id=",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sequential: list[dict[str, Any]] = []
    loaded: list[dict[str, Any]] = []
    wrk = shutil.which("wrk")
    lua_ids = rng.choice(known_users, size=min(LUA_USER_IDS, len(known_users)), replace=False)
    quoted = ", ".join(f'"{u}"' for u in lua_ids.tolist())
    scripts = {}
    for label, prefix in (
        ("/health", "/health?user_id="),
        ("/recommend page", queries["/recommend page"]),
        ("/recommend", queries["/recommend"]),
    ):
        script = folder / f"{label.strip('/').replace(' ', '_')}.lua"
        script.write_text(LUA_RANDOM_ID % (quoted, prefix) + LUA_DONE)
        scripts[label] = script
    with running_server(catalog.artifact, catalog.db, port, folder / "server.log", None) as server:
        with httpx.Client(base_url=base, timeout=10) as client:
            for user in picked[:50]:
                checked(client, queries["/recommend 1% filter"] + user, narrow)
            for label, prefix in queries.items():
                paths = [prefix + user for user in picked]
                sequential.append(sequential_latency(client, paths, label))
            sequential.append(sequential_latency(client, ["/health"] * len(picked), "/health"))
        if wrk is None:
            console.print(
                "[yellow]wrk not found: install it (apt-get install -y wrk) for part b[/]"
            )
        else:
            for round_number in range(1, args.rounds + 1):
                for label, script in scripts.items():
                    cpu_before = process_cpu_seconds(server.pid)
                    stats = run_wrk(wrk, base + "/", script, args.duration, label)
                    cpu_ms = (process_cpu_seconds(server.pid) - cpu_before) * 1000
                    stats["server_cpu_ms_per_request"] = round(
                        cpu_ms / max(stats["requests"], 1), 4
                    )
                    stats["round"] = round_number
                    loaded.append(stats)

    by_label = {s["endpoint"]: s for s in sequential}
    page_p99 = by_label["/recommend page"]["latency_ms"]["p99"]
    narrow_p99 = by_label["/recommend 1% filter"]["latency_ms"]["p99"]
    console.print(
        table(
            f"single connection, {args.requests:,} sequential requests (ms)",
            ["request", "p50", "p95", "p99", "mean"],
            [
                [s["endpoint"], *(s["latency_ms"][q] for q in ("p50", "p95", "p99", "mean"))]
                for s in sequential
            ],
        )
    )
    console.print(
        f"page p99 {page_p99} ms (target ≤ {PAGE_P99_TARGET_MS})"
        f" {verdict(page_p99 <= PAGE_P99_TARGET_MS)};"
        f" 1% filter ({narrow_share:.2%} of items) p99 {narrow_p99} ms"
        f" (target ≤ {NARROW_P99_TARGET_MS}) {verdict(narrow_p99 <= NARROW_P99_TARGET_MS)}"
    )
    ratios: dict[str, list[float]] = {"/recommend page": [], "/recommend": []}
    for start in range(0, len(loaded), len(scripts)):
        triple = {w["endpoint"]: w for w in loaded[start : start + len(scripts)]}
        for label in ratios:
            ratios[label].append(
                triple[label]["requests_per_second"] / triple["/health"]["requests_per_second"]
            )
    medians = {label: float(np.median(r)) if r else None for label, r in ratios.items()}
    if loaded:
        console.print(
            table(
                f"wrk -t2 -c32 -d{args.duration}s, {args.rounds} interleaved rounds",
                ["round", "request", "requests/s", "server CPU ms/request", "p99 ms", "non-2xx"],
                [
                    [
                        w["round"],
                        w["endpoint"],
                        w["requests_per_second"],
                        w["server_cpu_ms_per_request"],
                        w["latency_us"]["p99"] / 1000,
                        w["non_2xx"],
                    ]
                    for w in loaded
                ],
            )
        )
        page_ratio = medians["/recommend page"]
        assert page_ratio is not None
        console.print(
            f"page / health per round: {', '.join(f'{r:.3f}' for r in ratios['/recommend page'])};"
            f" median {page_ratio:.3f} (target ≥ {RPS_RATIO_TARGET})"
            f" {verdict(page_ratio >= RPS_RATIO_TARGET)}; plain /recommend / health median"
            f" {medians['/recommend']:.3f}"
        )
    write_results(
        args.name,
        {
            "artifact": str(catalog.artifact.name),
            "page_filter": page,
            "narrow_filter": narrow,
            "narrow_share_of_catalog": round(narrow_share, 4),
            "k": K,
            "load_average_1m_at_start": start_load,
            "targets": {
                "page_p99_ms": PAGE_P99_TARGET_MS,
                "narrow_p99_ms": NARROW_P99_TARGET_MS,
                "page_rps_ratio": RPS_RATIO_TARGET,
            },
            "single_connection": sequential,
            "page_p99_met": page_p99 <= PAGE_P99_TARGET_MS,
            "narrow_p99_met": narrow_p99 <= NARROW_P99_TARGET_MS,
            "wrk": loaded,
            "rps_ratio_to_health_per_round": {
                label: [round(r, 3) for r in values] for label, values in ratios.items()
            },
            "rps_ratio_to_health": {
                label: None if m is None else round(m, 3) for label, m in medians.items()
            },
            "page_rps_ratio_met": None
            if medians["/recommend page"] is None
            else medians["/recommend page"] >= RPS_RATIO_TARGET,
        },
    )


if __name__ == "__main__":
    main()
