"""What each compiled loop saves, in process: the same calls with the C kernel and with its
numpy version, on the 100k-item shop's ALS artifact, for the page request's shoppers, and
whether the two answered alike.

* explanations: ``explain.reason_fields`` (ALS's contributions, the top 3 reasons of each of
  10 recommended items, their JSON), per answer;
* MMR: ``diversify`` with lambda 0.8 over the 30-item pool of a k = 10 answer;
* filtered top k: ``exact_eligible`` over the store's median-sized category (the page's
  category filter), the shopper's own items excluded.

Each timing is the median of --rounds passes over the same shoppers, per call.

    python bench/compiled_loops.py [--users 2000] [--rounds 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("SEARCH_INDEX", "off")

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from _common import console, machine, prepare_catalog, table, warn_if_busy, write_results
from recsys_lite.config import Settings
from recsys_lite.models import retrieval
from recsys_lite.ranking import diversity, explain
from recsys_lite.ranking.explain import UserItems
from recsys_lite.ranking.filters import ItemFilter
from recsys_lite.serving.lists import item_vectors
from recsys_lite.serving.runtime import ServingState
from serving_filters import filters

NAME = "compiled_loops"


def per_call_ms(calls: list[Callable[[], Any]], rounds: int) -> float:
    for call in calls[:100]:  # warm the caches the first calls fill
        call()
    passes = []
    for _ in range(rounds):
        started = time.perf_counter()
        for call in calls:
            call()
        passes.append((time.perf_counter() - started) / len(calls) * 1000)
    return round(statistics.median(passes), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    missing = [
        name
        for name, module in [
            ("explain", explain),
            ("diversity", diversity),
            ("retrieval", retrieval),
        ]
        if module.kernel is None
    ]
    if missing:
        raise SystemExit(f"kernels not built for {missing}: install with a C compiler first")
    start_load = warn_if_busy()
    catalog = prepare_catalog()
    state = ServingState.load(Settings(model_dir=catalog.artifact, db_path=catalog.db))
    model, shop = state.model, state.catalog
    category = filters(catalog.db)[0]["category"]
    mask = shop.eligible(ItemFilter(categories=(category,)))
    unit = model._unit_vectors()
    shoppers = []
    for user in range(min(args.users, len(model.user_map))):
        past = UserItems.from_model(model, user)
        if len(past.items):
            ranked = model.recommend(str(model.user_map.ids[user]), 30)
            shoppers.append((user, past, ranked))

    def similarity_of(targets: np.ndarray, past: np.ndarray) -> np.ndarray:
        vectors = item_vectors(state, np.concatenate([targets, past]))
        return np.asarray(vectors[: len(targets)] @ vectors[len(targets) :].T)

    def reasons(past: UserItems, items: np.ndarray, use_kernel: bool) -> list[bytes]:
        return explain.reason_fields(
            model, past, items, 3, similarity_of, shop.because_fragments, shop.because_fragment,
            use_kernel=use_kernel,
        )  # fmt: skip

    eligible = retrieval._eligible(mask)
    rows = retrieval._rows(eligible, model.item_vectors())
    queries = model.user_vectors(np.array([user for user, _, _ in shoppers]))

    def top(at: int, past: UserItems, use_kernel: bool) -> tuple[np.ndarray, np.ndarray]:
        return retrieval.exact_eligible(
            rows, queries[at], 30, eligible.indices, past.items, use_kernel=use_kernel
        )

    def mmr(ranked: Any, use_kernel: bool) -> np.ndarray:
        return diversity.diversify(
            ranked.items, ranked.scores, unit[ranked.items], 0.8, None, 10, use_kernel=use_kernel
        )

    kinds: dict[str, Callable[[int, UserItems, Any, bool], Any]] = {
        "explanations (10 items, top 3)": lambda at, past, ranked, k: reasons(
            past, ranked.items[:10], k
        ),
        "MMR (pool 30, k 10)": lambda at, past, ranked, k: mmr(ranked, k),
        f"filtered top k ({len(eligible.indices):,} eligible)": lambda at, past, ranked, k: top(
            at, past, k
        ),
    }
    results: dict[str, dict[str, Any]] = {}
    rows_out = []
    for kind, run in kinds.items():
        same = 0
        for at, (_, past, ranked) in enumerate(shoppers):
            compiled, reference = run(at, past, ranked, True), run(at, past, ranked, False)
            if isinstance(compiled, tuple):
                same += all(np.array_equal(a, b) for a, b in zip(compiled, reference, strict=True))
            elif isinstance(compiled, np.ndarray):
                same += np.array_equal(compiled, reference)
            else:
                same += compiled == reference
        timings = {
            name: per_call_ms(
                [
                    partial(run, at, past, ranked, use)
                    for at, (_, past, ranked) in enumerate(shoppers)
                ],
                args.rounds,
            )
            for name, use in (("compiled", True), ("numpy", False))
        }
        results[kind] = {**timings, "identical_answers": same, "shoppers": len(shoppers)}
        rows_out.append([kind, timings["compiled"], timings["numpy"], f"{same} / {len(shoppers)}"])
    console.print(
        table(
            "per call, in process (ms, median of rounds)",
            ["loop", "compiled", "numpy", "identical answers"],
            rows_out,
        )
    )
    write_results(
        NAME,
        {
            "machine": machine(),
            "load_average_1m_at_start": start_load,
            "category": category,
            "rounds": args.rounds,
            "loops": results,
        },
    )


if __name__ == "__main__":
    main()
