"""Which Faiss index for a 100k-item catalog: recall against exact search, and latency.

ALS item factors (64 dims) of the 100,341 items that 1.5M synthetic events of 100k users touch
(see _common.CATALOG_SPEC); queries are the factor vectors of 1,000 real users. Two recalls are
measured per index:

* raw recall@10: the index's own top 10 against the exact top 10 by inner product;
* served recall@10: ``Recommender.recommend`` with the index installed, which asks the index for
  k + seen candidates and drops the user's seen items (flat and HNSW indexes give exact inner
  products; IVF's candidates are re-scored), against the same call
  with ``use_index=False``. This is what a shopper gets.

Latency is per single query (the serving shape: one request, one user), after a warm-up, with
Faiss's default OpenMP thread count and with one thread.

    python bench/index_recall.py [--queries 1000] [--rebuild]
"""

from __future__ import annotations

import os

# One BLAS thread: the serving process scores one user at a time, and a single query gains
# nothing from BLAS threads while contention with Faiss's OpenMP pool costs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from _common import (
    console,
    percentiles_ms,
    prepare_catalog,
    table,
    timed,
    warn_if_busy,
    write_results,
)
from recsys_lite.config import Settings
from recsys_lite.models.artifact import load_artifact
from recsys_lite.models.base import Recommender
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.retrieval import top_k

NAME = "index_recall"
K = 10
WARMUP = 50
EF_SEARCH = (16, 32, 64, 128, 256)
HNSW_M = (8, 16)
NPROBE = (8, 32, 128)


@dataclass(frozen=True)
class Variant:
    label: str
    kind: str
    settings: Settings


def variants() -> list[Variant]:
    found = [Variant("flat (exact)", "flat", Settings())]
    found += [
        Variant(f"hnsw M={m} efSearch={ef}", "hnsw", Settings(faiss_hnsw_m=m, faiss_ef_search=ef))
        for m in HNSW_M
        for ef in EF_SEARCH
    ]
    found += [Variant(f"ivf nprobe={n}", "ivf", Settings(faiss_nprobe=n)) for n in NPROBE]
    return found


def build_key(variant: Variant) -> tuple[str, int | None]:
    return variant.kind, variant.settings.faiss_hnsw_m if variant.kind == "hnsw" else None


def exact_top(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    # batched so the score matrix stays near 40 MB instead of 400 MB for 1,000 x 100k floats
    out = np.empty((len(queries), K), dtype=np.int64)
    for start in range(0, len(queries), 100):
        out[start : start + 100] = top_k(queries[start : start + 100] @ items.T, K)
    return out


def recall(found: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> float:
    """Mean share of each true top k that the found list contains (-1 pads are not items)."""
    hits = [
        len(np.intersect1d(f[f >= 0], t)) / max(len(t), 1)
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits))


def per_query(fn: Callable[[int], np.ndarray], n: int) -> tuple[list[np.ndarray], list[float]]:
    for i in range(min(WARMUP, n)):
        fn(i)
    results: list[np.ndarray] = []
    seconds: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        results.append(fn(i))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def raw_lists(index: VectorIndex, queries: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    return per_query(lambda i: index.search(queries[i], K)[0][0], len(queries))


def served_lists(
    model: Recommender, user_ids: list[str], use_index: bool
) -> tuple[list[np.ndarray], list[float]]:
    """Top k through the public serving call, seen items excluded, as a shopper would get."""
    return per_query(
        lambda i: model.recommend(user_ids[i], K, use_index=use_index).items, len(user_ids)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rebuild", action="store_true", help="regenerate data and artifact")
    args = parser.parse_args()
    start_load = warn_if_busy()

    catalog = prepare_catalog(rebuild=args.rebuild)
    model = load_artifact(catalog.artifact).model
    items = model.item_vectors()
    assert items is not None, "ALS has item vectors"
    n_users, n_items = len(model.user_map), len(model.item_map)
    rng = np.random.default_rng(args.seed)
    users = rng.choice(n_users, size=min(args.queries, n_users), replace=False)
    queries = np.asarray(model.user_vectors(users), dtype=np.float32)
    user_ids = model.user_map.to_external(users).tolist()
    console.print(
        f"{n_items:,} items x {items.shape[1]} factors, {len(users):,} user queries,"
        f" faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads"
    )

    truth = exact_top(items, queries)
    served_truth, _ = served_lists(model, user_ids, use_index=False)

    # one index per build configuration; the query-time knobs vary over it
    indexes: dict[tuple[str, int | None], tuple[VectorIndex, float]] = {}
    for variant in variants():
        key = build_key(variant)
        if key not in indexes:
            console.print(f"building {variant.kind} index {key}...")
            with timed() as build:
                index = VectorIndex.build(items, variant.kind, variant.settings)
            indexes[key] = (index, build.seconds)

    rows: dict[str, dict[str, Any]] = {
        "numpy": {
            "index": "numpy exact (use_faiss=false)",
            "kind": "numpy",
            "build_seconds": 0.0,
            "size_mb": items.nbytes / 1e6,
            "raw_recall@10": 1.0,
            "served_recall@10": 1.0,
            "latency_ms": {},
        }
    }
    # Faiss parallelises even a single query over its OpenMP threads, which helps on an idle
    # machine and hurts on a busy one (every query waits at a barrier for every thread), so
    # latency is measured at the library default and at one thread. The default goes first, as
    # a fresh server process would run it; switching thread counts back and forth in one
    # process has shown unstable timings.
    default_threads = faiss.omp_get_max_threads()
    for threads in dict.fromkeys((default_threads, 1)):
        faiss.omp_set_num_threads(threads)
        _, numpy_raw = per_query(lambda i: top_k(items @ queries[i], K)[0], len(users))
        _, numpy_served = served_lists(model, user_ids, use_index=False)
        rows["numpy"]["latency_ms"][threads] = {
            "raw": percentiles_ms(numpy_raw),
            "served": percentiles_ms(numpy_served),
        }
        for variant in variants():
            index, build_seconds = indexes[build_key(variant)]
            index.configure(variant.settings)
            found, raw_seconds = raw_lists(index, queries)
            model.user_index = index
            served, served_seconds = served_lists(model, user_ids, use_index=True)
            row = rows.setdefault(
                variant.label,
                {
                    "index": variant.label,
                    "kind": variant.kind,
                    "hnsw_m": variant.settings.faiss_hnsw_m if variant.kind == "hnsw" else None,
                    "ef_search": variant.settings.faiss_ef_search
                    if variant.kind == "hnsw"
                    else None,
                    "nprobe": variant.settings.faiss_nprobe if variant.kind == "ivf" else None,
                    "build_seconds": round(build_seconds, 3),
                    "size_mb": len(faiss.serialize_index(index.index)) / 1e6,
                    # search results do not depend on the thread count
                    "raw_recall@10": recall(found, list(truth)),
                    "served_recall@10": recall(served, served_truth),
                    "latency_ms": {},
                },
            )
            row["latency_ms"][threads] = {
                "raw": percentiles_ms(raw_seconds),
                "served": percentiles_ms(served_seconds),
            }
    faiss.omp_set_num_threads(default_threads)

    thread_counts = list(dict.fromkeys((default_threads, 1)))
    columns = ["index", "recall@10", "served recall@10"]
    for threads in thread_counts:
        columns += [f"p50/p99 ms {threads}T", f"served p50/p99 ms {threads}T"]
    columns += ["build s", "MB"]

    def pair(latency: dict[str, float]) -> str:
        return f"{latency['p50']:.2f} / {latency['p99']:.2f}"

    lines: list[list[Any]] = []
    for r in rows.values():
        line: list[Any] = [r["index"], r["raw_recall@10"], r["served_recall@10"]]
        for threads in thread_counts:
            line += [
                pair(r["latency_ms"][threads]["raw"]),
                pair(r["latency_ms"][threads]["served"]),
            ]
        lines.append([*line, r["build_seconds"], r["size_mb"]])
    console.print(
        table(
            f"MIPS on {n_items:,} ALS item vectors, {len(users):,} user queries, k={K}"
            " (T = Faiss OpenMP threads)",
            columns,
            lines,
        )
    )
    write_results(
        NAME,
        {
            "dataset": {
                "n_items": n_items,
                "n_users": n_users,
                "factors": int(items.shape[1]),
                "catalog_spec": catalog.folder.name,
                "queries": len(users),
                "k": K,
            },
            "load_average_1m_at_start": start_load,
            "faiss_version": faiss.__version__,
            "default_omp_threads": default_threads,
            "rows": list(rows.values()),
        },
    )


if __name__ == "__main__":
    main()
