"""Faiss flat, Faiss HNSW and Qdrant over the same item vectors: recall and latency.

Item vectors are ALS factors: trained here on MovieLens ml-latest-small (../shared/data), and
the 100k-item synthetic catalog's artifact (_common.prepare_catalog, shared with
index_recall). Queries are real users' factor vectors. For each store:

* build seconds: from the vectors to a store that answers;
* recall@10: the store's top 10 against the exact top 10 by inner product;
* served recall@10: ``Recommender.recommend`` with the store installed (seen items excluded)
  against the same call with ``use_index=False``: the parity a shopper sees;
* latency per single query (the serving shape: one request, one user) and per batch of
  ``--batch`` queries (Qdrant's batch request), p50 and p99 after a warm-up.

Faiss runs on one OpenMP thread, as the API does. Qdrant runs in its local mode (in memory, in
this process); ``--qdrant-url`` adds a Qdrant server.

    python bench/vector_store.py [--queries 500] [--batch 100] [--qdrant-url URL]
"""

from __future__ import annotations

import os

# One BLAS thread: the serving process scores one user at a time (as in index_recall).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import duckdb
import faiss
import numpy as np

from _common import (
    console,
    empty_work_folder,
    percentiles_ms,
    prepare_catalog,
    table,
    timed,
    warn_if_busy,
    write_results,
)
from _datasets import PUBLIC, SHARED
from recsys_lite.config import Settings
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.models import create_model
from recsys_lite.models.artifact import load_artifact
from recsys_lite.models.base import Recommender
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.qdrant_store import QdrantStore
from recsys_lite.models.retrieval import top_k
from recsys_lite.models.vector_store import ItemVectorStore

NAME = "vector_store"
K = 10
WARMUP = 20


@dataclass(frozen=True)
class Vectors:
    name: str
    model: Recommender
    items: np.ndarray
    users: np.ndarray  # user indices queried
    queries: np.ndarray


def movielens(n_queries: int, rng: np.random.Generator) -> Vectors | None:
    source_name, convert = PUBLIC["ml-latest-small"]
    source = SHARED / source_name
    if not source.is_dir():
        console.print(f"[yellow]skipping ml-latest-small: {source} is absent[/]")
        return None
    # its own folder: _datasets.prepare empties the one other benchmarks may be reading
    folder = empty_work_folder(NAME, "ml-latest-small")
    with duckdb.connect() as con:
        convert(source, folder, con)
    store = Store(folder / "store.db")
    ingest(store, folder / "events.parquet", folder / "items.parquet", show_progress=False)
    model = create_model("als", {"factors": 64})
    model.fit(store.read_events(), store.read_items())
    return _vectors("ml-latest-small (ALS, 64 factors)", model, n_queries, rng)


def catalog100k(n_queries: int, rng: np.random.Generator) -> Vectors:
    model = load_artifact(prepare_catalog().artifact).model
    return _vectors("synthetic 100k items (ALS, 64 factors)", model, n_queries, rng)


def _vectors(name: str, model: Recommender, n_queries: int, rng: np.random.Generator) -> Vectors:
    items = model.item_vectors()
    assert items is not None, "ALS has item vectors"
    n_users = len(model.user_map)
    users = rng.choice(n_users, size=min(n_queries, n_users), replace=False)
    queries = np.asarray(model.user_vectors(users), dtype=np.float32)
    return Vectors(name, model, np.ascontiguousarray(items, dtype=np.float32), users, queries)


def stores(qdrant_url: str | None) -> dict[str, Callable[[np.ndarray, str], ItemVectorStore]]:
    defaults = Settings()
    found: dict[str, Callable[[np.ndarray, str], ItemVectorStore]] = {
        "faiss flat (exact)": lambda items, _: VectorIndex.build(items, "flat", defaults),
        f"faiss hnsw M={defaults.faiss_hnsw_m} efSearch={defaults.faiss_ef_search}": (
            lambda items, _: VectorIndex.build(items, "hnsw", defaults)
        ),
        "qdrant local (in memory)": lambda items, name: QdrantStore.open(
            items, name, Settings(vector_store="qdrant")
        ),
    }
    if qdrant_url:
        server = Settings(vector_store="qdrant", qdrant_url=qdrant_url)
        found["qdrant server"] = lambda items, name: QdrantStore.open(
            items, f"bench-{name}-{time.time_ns()}", server
        )
    return found


def exact_top(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), dtype=np.int64)
    for start in range(0, len(queries), 100):  # keeps the score matrix near 40 MB
        out[start : start + 100] = top_k(queries[start : start + 100] @ items.T, K)
    return out


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    hits = [len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def timed_calls(fn: Callable[[int], np.ndarray], n: int) -> tuple[list[np.ndarray], list[float]]:
    for i in range(min(WARMUP, n)):
        fn(i)
    results, seconds = [], []
    for i in range(n):
        started = time.perf_counter()
        results.append(fn(i))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def measure(
    vectors: Vectors,
    label: str,
    build: Callable[[np.ndarray, str], ItemVectorStore],
    batch: int,
    truth: list[np.ndarray],
    served_truth: list[np.ndarray],
) -> dict[str, Any]:
    with timed() as built:
        store = build(vectors.items, vectors.name.split()[0])
    queries, model = vectors.queries, vectors.model
    found, single = timed_calls(lambda i: store.search(queries[i], K)[0][0], len(queries))
    batches = [queries[i : i + batch] for i in range(0, len(queries), batch)]
    _, batched = timed_calls(lambda i: store.search(batches[i], K)[0], len(batches))
    model.user_index = store
    user_ids = model.user_map.to_external(vectors.users).tolist()
    served, _ = timed_calls(lambda i: model.recommend(user_ids[i], K).items, len(user_ids))
    model.user_index = None
    return {
        "store": label,
        "kind": store.kind,
        "build_seconds": round(built.seconds, 3),
        "recall@10": recall(found, truth),
        "served_recall@10": recall(served, served_truth),
        "single_query_ms": percentiles_ms(single),
        "batch_ms": percentiles_ms(batched),
        "batch_per_query_ms": round(float(np.mean(batched)) * 1000 / batch, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qdrant-url", help="also measure a Qdrant server (e.g. :6333)")
    args = parser.parse_args()
    start_load = warn_if_busy()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    datasets = [v for v in (movielens(args.queries, rng), catalog100k(args.queries, rng)) if v]
    results = []
    for vectors in datasets:
        console.print(f"{vectors.name}: {len(vectors.items):,} items, {len(vectors.users)} users")
        truth = list(exact_top(vectors.items, vectors.queries))
        user_ids = vectors.model.user_map.to_external(vectors.users).tolist()
        vectors.model.user_index = None
        served_truth = [
            vectors.model.recommend(user, K, use_index=False).items for user in user_ids
        ]
        rows = [
            measure(vectors, label, build, args.batch, truth, served_truth)
            for label, build in stores(args.qdrant_url).items()
        ]
        columns = [
            "store", "recall@10", "served recall@10", "single p50/p99 ms", "batch p50/p99 ms",
            "batch ms/query", "build s",
        ]  # fmt: skip
        lines = [
            [
                r["store"], r["recall@10"], r["served_recall@10"],
                f"{r['single_query_ms']['p50']:.3f} / {r['single_query_ms']['p99']:.3f}",
                f"{r['batch_ms']['p50']:.2f} / {r['batch_ms']['p99']:.2f}",
                r["batch_per_query_ms"], r["build_seconds"],
            ]
            for r in rows
        ]  # fmt: skip
        title = (
            f"{vectors.name}: {len(vectors.items):,} items, {len(vectors.users)} queries,"
            f" k={K}, batches of {args.batch}"
        )
        console.print(table(title, columns, lines))
        results.append(
            {
                "dataset": vectors.name,
                "n_items": len(vectors.items),
                "factors": int(vectors.items.shape[1]),
                "queries": len(vectors.users),
                "k": K,
                "batch_size": args.batch,
                "rows": rows,
            }
        )
    write_results(
        NAME,
        {
            "load_average_1m_at_start": start_load,
            "faiss_omp_threads": 1,
            "qdrant_client": metadata.version("qdrant-client"),
            "qdrant_server": args.qdrant_url,
            "datasets": results,
        },
    )


if __name__ == "__main__":
    main()
