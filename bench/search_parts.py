"""Where a /search request's time goes, part by part, in one process.

On the 20,000-item text index that ``bench/search.py`` builds (run it first), with the shop's
queries: BM25 retrieval, the Faiss search of the query vector in a worker thread with
OpenMP's default team and with one thread (the count is per thread: the API's worker threads
do not inherit the main thread's setting), and the query encoding with one and with two torch
threads, each variant in interleaved rounds so a change in the shared machine's speed moves
all alike.

    python bench/search_parts.py [--queries 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faiss

from _common import console, percentiles_ms, table, warn_if_busy, write_results
from search import built_text_index, encoded_shop_queries

NAME = "search_parts"
DEPTH = 50  # how deep the engine reads each list for k=10


def timed_loop(queries: list[str], work: Callable[[str], Any]) -> list[float]:
    seconds = []
    for query in queries:
        started = time.perf_counter()
        work(query)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = warn_if_busy()
    folder, index = built_text_index()
    encoder, queries, vectors = encoded_shop_queries(folder / "store.db", args.queries)
    import torch

    samples: dict[str, list[float]] = {}

    def record(label: str, seconds: list[float]) -> None:
        samples.setdefault(label, []).extend(seconds)

    def faiss_in_worker(threads: int | None) -> list[float]:
        def work() -> list[float]:
            if threads is not None:
                faiss.omp_set_num_threads(threads)
            # the product's own call sets one thread; the raw index shows the default team
            return timed_loop(queries, lambda q: index._faiss.search(vectors[q][None, :], DEPTH))

        with ThreadPoolExecutor(1) as pool:  # a fresh thread, as the API's executor has
            return pool.submit(work).result()

    default_team = faiss.omp_get_max_threads()
    for _ in range(args.rounds):
        record("BM25 retrieval (tokenise + scores + top 50)", timed_loop(
            queries, lambda q: index.lexical(q, DEPTH, None)))  # fmt: skip
        record(f"Faiss search, worker thread, OpenMP default ({default_team} threads)",
               faiss_in_worker(None))  # fmt: skip
        record("Faiss search, worker thread, 1 thread", faiss_in_worker(1))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            record(f"query encoding, {threads} torch thread(s)",
                   timed_loop(queries, encoder.encode_query))  # fmt: skip
        torch.set_num_threads(1)
    rows = {label: percentiles_ms(seconds) for label, seconds in samples.items()}
    console.print(
        table(
            f"one /search's parts, {args.queries} queries x {args.rounds} rounds (ms)",
            ["part", "p50", "p95", "p99", "mean"],
            [[label, *row.values()] for label, row in rows.items()],
        )
    )
    write_results(
        NAME,
        {
            "index_items": len(index),
            "queries": args.queries,
            "rounds": args.rounds,
            "load_average_1m_at_start": load,
            "latency_ms": rows,
        },
    )


if __name__ == "__main__":
    main()
