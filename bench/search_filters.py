"""What a filter costs /search's two rankings, in one process.

On the 20,000-item text index that ``bench/search.py`` builds (run it first; its items get
their stored prices here, as a retrained index has them), with the shop's queries encoded
beforehand: the eligibility mask, BM25 retrieval and the semantic ranking, 50 deep as the
engine reads them for k=10, without a filter, for one brand (narrow: the exact pass over its
rows), one category, everything but one category (broad: Faiss over-fetch) and a price band,
each in interleaved rounds so a change in the shared machine's speed moves all alike.

    python bench/search_filters.py [--queries 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import numpy as np

from _common import console, percentiles_ms, table, warn_if_busy, write_results
from recsys_lite.data.store import Store
from recsys_lite.ranking.filters import NO_FILTER, ItemFilter
from recsys_lite.search.index import TextIndex
from search import built_text_index, encoded_shop_queries

NAME = "search_filters"
DEPTH = 50  # how deep the engine reads each list for k=10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = warn_if_busy()
    folder, stored = built_text_index()
    rows = {row["item_id"]: row for row in Store(folder / "store.db").read_items().to_pylist()}
    index = TextIndex.build([rows[item] for item in stored.ids], stored.vectors)
    _, queries, vectors = encoded_shop_queries(folder / "store.db", args.queries)

    categories = Counter(str(rows[item]["category"]) for item in index.ids)
    brands = Counter(str(rows[item]["brand"]) for item in index.ids)
    prices = np.sort(index.fields["price"][np.isfinite(index.fields["price"])])
    top_category = categories.most_common(1)[0][0]
    filters = {
        "none": NO_FILTER,
        "one brand": ItemFilter(brands=(brands.most_common(1)[0][0],)),
        "one category": ItemFilter(categories=(top_category,)),
        "all but one category": ItemFilter(exclude_categories=(top_category,)),
        "price band (middle third)": ItemFilter(
            min_price=float(prices[len(prices) // 3]), max_price=float(prices[2 * len(prices) // 3])
        ),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in filters}
    eligible: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, item_filter in filters.items():
            parts = samples[name]
            for query in queries:
                started = time.perf_counter()
                allowed = index.eligible(item_filter)
                masked = time.perf_counter()
                index.lexical(query, DEPTH, allowed)
                lexical = time.perf_counter()
                index.semantic(vectors[query], DEPTH, allowed)
                semantic = time.perf_counter()
                parts.setdefault("mask", []).append(masked - started)
                parts.setdefault("BM25", []).append(lexical - masked)
                parts.setdefault("semantic", []).append(semantic - lexical)
            eligible[name] = len(index) if allowed is None else int(allowed.sum())
    rows_out = {
        name: {"eligible_items": eligible[name]}
        | {part: percentiles_ms(seconds) for part, seconds in parts.items()}
        for name, parts in samples.items()
    }
    console.print(
        table(
            f"/search rankings with a filter, {len(index):,} items, {args.queries} queries x"
            f" {args.rounds} rounds (ms, p50 / p99)",
            ["filter", "eligible", "mask", "BM25", "semantic"],
            [
                [name, f"{row['eligible_items']:,}"]
                + [
                    f"{row[part]['p50']} / {row[part]['p99']}"
                    for part in ("mask", "BM25", "semantic")
                ]
                for name, row in rows_out.items()
            ],
        )
    )
    write_results(
        NAME,
        {
            "index_items": len(index),
            "queries": args.queries,
            "rounds": args.rounds,
            "depth": DEPTH,
            "load_average_1m_at_start": load,
            "latency_ms": rows_out,
        },
    )


if __name__ == "__main__":
    main()
