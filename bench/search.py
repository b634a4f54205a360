"""Catalog search: how fast /search answers on a 20k-item catalog, and how well each ranking
finds a movie from a damaged title.

1. Quality — ml-latest-small's movies.csv (9,742 movies: title, genres). For a fixed random
   sample of movies, two queries each, made from the title without its year: one with words
   dropped (a third of them, at least one, when the title has three words or more) and one
   misspelt (one letter swapped, dropped, doubled or replaced in each of up to two words of
   four letters or more). The query must find that movie: recall@5 of the lexical (BM25),
   semantic (sentence embeddings in Faiss) and hybrid (reciprocal rank fusion) rankings, the
   product's own code (``search.engine.run``) on the product's own index.
2. Latency — the synthetic 1M-event shop (20,000 items), ALS trained with SEARCH_INDEX=on, a
   real ``recsys-lite serve``; sequential GET /search over one kept-alive connection (the query
   embedding is part of each request), anonymous and with a known shopper's user_id.

   Three passes: the shop's query mix (some queries repeat, as shoppers' do, and are answered
   from the API's query-vector cache), the same with a known shopper's user_id, and queries
   the server has never seen (every one encoded: the target is judged there).

    python bench/search.py [--queries 500] [--requests 1000] [--skip-quality] [--skip-latency]
        [--rebuild]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from _common import (
    RESULTS,
    ROOT,
    WORK,
    console,
    empty_work_folder,
    million_event_shop,
    percentiles_ms,
    table,
    timed,
    verdict,
    warn_if_busy,
    write_results,
)
from recsys_lite.config import Settings
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.search.embedder import Encoder
from recsys_lite.search.engine import MODES, SearchRequest, run
from recsys_lite.search.index import TextIndex
from recsys_lite.search.text import semantic_text
from recsys_lite.training import train
from serving_load import free_port, process_cpu_seconds, stop

MOVIES = ROOT.parent / "shared" / "data" / "ml-latest-small" / "movies.csv"
LATENCY_TARGET_P99_MS = 25.0
WARMUP = 50
YEAR = re.compile(r"\s*\(\d{4}\)\s*$")
BUILT = "built.json"  # the latency catalog's training timings, written when it is complete


# ----- quality -----------------------------------------------------------------------------


def read_movies() -> list[dict[str, Any]]:
    with MOVIES.open(newline="", encoding="utf-8") as file:
        return [
            {
                "item_id": row["movieId"],
                "title": row["title"],
                # the product's MovieLens catalog (bench/_datasets.py) keeps the first genre as
                # the category; all of them go into the description
                "category": row["genres"].split("|")[0],
                "description": ", ".join(row["genres"].split("|")),
            }
            for row in csv.DictReader(file)
        ]


def misspell(word: str, rng: random.Random) -> str:
    n = rng.randrange(1, len(word) - 1)  # the first letter stays, as in most typing slips
    kind = rng.choice(("swap", "drop", "double", "replace"))
    if kind == "swap":
        return word[:n] + word[n + 1] + word[n] + word[n + 2 :]
    if kind == "drop":
        return word[:n] + word[n + 1 :]
    if kind == "double":
        return word[:n] + word[n] + word[n:]
    letters = "abcdefghijklmnopqrstuvwxyz".replace(word[n].lower(), "")
    return word[:n] + rng.choice(letters) + word[n + 1 :]


def labelled_queries(
    movies: list[dict[str, Any]], count: int, seed: int = 0
) -> list[dict[str, str]]:
    rng = random.Random(seed)
    queries = []
    for movie in rng.sample(movies, count):
        words = YEAR.sub("", movie["title"]).split()
        if len(words) >= 3:
            drop = set(rng.sample(range(len(words)), max(1, len(words) // 3)))
            kept = [w for n, w in enumerate(words) if n not in drop]
            queries.append({"kind": "words dropped", "query": " ".join(kept), **_id(movie)})
        long_words = [n for n, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
        if long_words:
            damaged = list(words)
            for n in rng.sample(long_words, min(2, len(long_words))):
                damaged[n] = misspell(words[n], rng)
            queries.append({"kind": "misspelt", "query": " ".join(damaged), **_id(movie)})
    return queries


def _id(movie: dict[str, Any]) -> dict[str, str]:
    return {"item_id": movie["item_id"], "title": movie["title"]}


def quality(count: int) -> dict[str, Any]:
    movies = read_movies()
    console.print(f"encoding {len(movies):,} movies (title, genres)...")
    encoder = Encoder()
    with timed() as encoding:
        vectors = encoder.encode([semantic_text(movie) for movie in movies])
    index = TextIndex.build(movies, vectors)
    queries = labelled_queries(movies, count)
    hits: dict[str, dict[str, list[bool]]] = {}
    misses: dict[str, list[dict[str, str]]] = {mode: [] for mode in MODES}
    for query in queries:
        for mode in MODES:
            result = run(index, encoder, SearchRequest(query["query"], k=5, mode=mode))
            found = query["item_id"] in [hit.item_id for hit in result.hits]
            for kind in (query["kind"], "all"):
                hits.setdefault(kind, {m: [] for m in MODES})[mode].append(found)
            if not found and len(misses[mode]) < 10:
                misses[mode].append({"query": query["query"], "wanted": query["title"]})
    recall = {
        kind: {"queries": len(by_mode["hybrid"])}
        | {mode: round(float(np.mean(values)), 4) for mode, values in by_mode.items()}
        for kind, by_mode in hits.items()
    }
    return {
        "catalog": f"{MOVIES.relative_to(ROOT.parent)} ({len(movies):,} movies)",
        "sampled_movies": count,
        "encoding_seconds": round(encoding.seconds, 2),
        "recall_at_5": recall,
        "examples": queries[:8],
        "misses_sample": misses,
    }


# ----- latency -----------------------------------------------------------------------------


def latency_catalog(rebuild: bool) -> tuple[Path, Path, dict[str, Any], bool]:
    """The store and artifact the server answers from, built once (encoding 20,000 items takes
    minutes) and reused by later runs unless ``rebuild``; the last value says it was reused."""
    folder = WORK / "search"
    db, artifact, built = folder / "store.db", folder / "artifacts" / "current", folder / BUILT
    if not rebuild and built.is_file() and (artifact / "search.npz").is_file():
        return artifact, db, json.loads(built.read_text()), True
    folder = empty_work_folder("search")
    events, items = million_event_shop()
    ingest(Store(db), events, items, show_progress=False)
    console.print("training ALS with its text index (20,000 items to encode)...")
    result = train(
        Store(db), "als", artifact, test_size=0, show_progress=False,
        settings=Settings(db_path=db, search_index="on"),
    )  # fmt: skip
    built.write_text(json.dumps(result.timings))  # last: a half-built folder is never reused
    return artifact, db, dict(result.timings), False


@contextlib.contextmanager
def server(artifact: Path, db: Path, log: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = dict(os.environ, LOG_LEVEL="WARNING", RATE_LIMIT_PER_IP="0", SEARCH_INDEX="on")
    command = [
        sys.executable, "-m", "recsys_lite.cli", "serve", "--model-dir", str(artifact),
        "--db", str(db), "--port", str(port),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while True:  # healthy first, then the text index loads in the background
                assert process.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "search not ready after 300 s"
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/search?q=ready", timeout=5).status_code == 200:
                        break
                time.sleep(0.5)
            yield url, process.pid
        finally:
            stop(process)


def built_text_index() -> tuple[Path, TextIndex]:
    """The 20k-item latency catalog's folder and its text index, as the last run built them."""
    folder = WORK / "search"
    artifact = folder / "artifacts" / "current" / "search.npz"
    if not artifact.is_file():
        raise SystemExit("no 20k-item text index: run python bench/search.py first")
    return folder, TextIndex.from_bytes(artifact.read_bytes())


def shop_queries(db: Path, count: int, seed: int = 1) -> list[str]:
    """Queries a shopper of the synthetic shop might type: title words, a brand, a product
    code, a description of a need in other words."""
    rng = random.Random(seed)
    rows = Store(db).read_items().to_pylist()
    needs = [
        "warm coat for winter", "something to cook eggs in", "strong coffee", "running shoes",
        "gift for a toddler", "plant pot for the balcony", "a good book to read",
        "wireless headphones", "skin care", "yoga equipment", "treats for my dog",
    ]  # fmt: skip
    queries = []
    for _ in range(count):
        row = rng.choice(rows)
        words = str(row["title"]).split()
        queries.append(
            rng.choice(
                [
                    " ".join(rng.sample(words, max(1, len(words) - 1))),
                    str(row["brand"]).split()[0],
                    str(row["item_id"]),
                    rng.choice(needs),
                ]
            )
        )
    return queries


def encoded_shop_queries(db: Path, count: int) -> tuple[Encoder, list[str], dict[str, np.ndarray]]:
    """A one-thread encoder without a cache (every call encodes), ``count`` shop queries and
    their vectors encoded ahead, for the benchmarks that time the parts of a search apart."""
    queries = shop_queries(db, count, seed=4)
    encoder = Encoder(threads=1, cache_size=0)
    encoder.encode_query("warm up")
    return encoder, queries, {query: encoder.encode_query(query) for query in queries}


def sequential(
    client: httpx.Client, queries: list[str], user_ids: list[str], sent: set[str]
) -> dict[str, Any]:
    """Timed requests after WARMUP; ``sent`` (updated) holds every query the server has seen,
    so the share answered from its query-vector cache is known."""
    seconds, repeated = [], 0
    for n, query in enumerate(queries):
        params: dict[str, str | int] = {"q": query, "k": 10}
        if user_ids:
            params["user_id"] = user_ids[n % len(user_ids)]
        started = time.perf_counter()
        answer = client.get("/search", params=params)
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        if n >= WARMUP:
            seconds.append(elapsed)
            repeated += query in sent
        sent.add(query)
    return {
        "requests": len(seconds),
        "latency_ms": percentiles_ms(seconds),
        "repeated_query_share": round(repeated / max(len(seconds), 1), 3),
    }


def fresh_queries(db: Path, count: int, sent: set[str]) -> list[str]:
    """Shop queries the server has never seen, each once: every one is encoded."""
    fresh: list[str] = []
    for query in shop_queries(db, 20 * count, seed=3):
        if query not in sent and query not in fresh:
            fresh.append(query)
        if len(fresh) == count:
            break
    return fresh


def latency(requests: int, rebuild: bool) -> dict[str, Any]:
    artifact, db, timings, reused = latency_catalog(rebuild)
    users = Store(db).read_events().column("user_id").unique().to_pylist()[:500]
    sent: set[str] = set()
    log = artifact.parent.parent / "server.log"
    with server(artifact, db, log) as (url, pid), httpx.Client(base_url=url) as client:

        def timed_pass(queries: list[str], user_ids: list[str]) -> dict[str, Any]:
            # the server's CPU per request hardly depends on how busy the machine is
            cpu = process_cpu_seconds(pid)
            result = sequential(client, queries, user_ids, sent)
            spent = (process_cpu_seconds(pid) - cpu) / len(queries)
            return result | {"server_cpu_ms_per_request": round(spent * 1000, 3)}

        # the shop's mix repeats some queries (a brand, a common need), as shoppers do
        anonymous = timed_pass(shop_queries(db, requests + WARMUP, seed=1), [])
        personal = timed_pass(shop_queries(db, requests + WARMUP, seed=2), users)
        fresh = timed_pass(fresh_queries(db, requests + WARMUP, sent), [])
    return {
        "catalog": "synthetic 1M-event shop, 20,000 items",
        "catalog_reused_from_an_earlier_run": reused,
        "training_timings_seconds": timings,
        "anonymous": anonymous,
        "with_user_id": personal,
        "every_query_new": fresh,
        "target_p99_ms": LATENCY_TARGET_P99_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500, help="movies sampled for quality")
    parser.add_argument("--requests", type=int, default=1000, help="timed /search requests")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--skip-quality", action="store_true",
        help="keep the quality section of the last results file (re-encodes nothing)",
    )  # fmt: skip
    parser.add_argument("--rebuild", action="store_true", help="rebuild the latency catalog")
    parser.add_argument("--name", default="search")
    parser.add_argument("--note", default=None, help="recorded in the results (what was run)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load = warn_if_busy()
    payload: dict[str, Any] = {"load_average_1m_at_start": load, "note": args.note}
    if args.skip_quality:
        source = RESULTS / f"{args.name}.json"
        previous = json.loads((source if source.is_file() else RESULTS / "search.json").read_text())
        payload["quality"] = previous["quality"] | {
            "measured_in_run_of": previous.get("quality", {}).get("measured_in_run_of")
            or {
                "finished_at": previous["finished_at"],
                "load_average_1m_at_start": previous["load_average_1m_at_start"],
            }
        }
    else:
        payload["quality"] = quality(args.queries)
    recall = payload["quality"]["recall_at_5"]
    console.print(
        table(
            "recall@5: the damaged title must find its movie",
            ["queries", "n", *MODES],
            [[kind, r["queries"], *(r[m] for m in MODES)] for kind, r in recall.items()],
        )
    )
    best_single = max(recall["all"]["lexical"], recall["all"]["semantic"])
    payload["hybrid_at_least_both"] = recall["all"]["hybrid"] >= best_single
    console.print(f"hybrid ≥ lexical and semantic: {verdict(payload['hybrid_at_least_both'])}")
    if not args.skip_latency:
        payload["latency"] = latency(args.requests, args.rebuild)
        rows = [
            [
                label, *payload["latency"][key]["latency_ms"].values(),
                payload["latency"][key]["repeated_query_share"],
                payload["latency"][key]["server_cpu_ms_per_request"],
            ]
            for label, key in (
                ("/search", "anonymous"), ("/search?user_id=", "with_user_id"),
                ("/search, every query new", "every_query_new"),
            )
        ]  # fmt: skip
        console.print(
            table(
                "single connection, ms",
                ["", "p50", "p95", "p99", "mean", "repeated", "server CPU ms"],
                rows,
            )
        )
        # judged where every query is encoded: repeats answered from the cache prove nothing
        p99 = payload["latency"]["every_query_new"]["latency_ms"]["p99"]
        payload["latency"]["target_met"] = p99 <= LATENCY_TARGET_P99_MS
        console.print(
            f"p99 ≤ {LATENCY_TARGET_P99_MS} ms with every query new:"
            f" {verdict(p99 <= LATENCY_TARGET_P99_MS)}"
        )
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
