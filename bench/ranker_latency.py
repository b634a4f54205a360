"""In-process latency of the ranker's scoring for one shopper on a 100k-item catalog.

A synthetic shop (``demo.generate``) with 100,000 items; the ranker over ALS with 200
candidates per source (ALS, trending, bought together) is fitted once, then a shopper's full
scoring (``score_history``: every source, the merge, the features, the booster) is timed for
known shoppers' histories, one at a time. This is the model's part of a /recommend answer,
without HTTP; the HTTP path adds the server's own cost (bench/serving_load.py).

    python bench/ranker_latency.py [--users 20000 --events 400000 --requests 300]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import numpy as np

from _common import console, percentiles_ms, warn_if_busy, write_results
from recsys_lite.data import demo
from recsys_lite.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--trees", type=int, default=150)
    args = parser.parse_args()
    load = warn_if_busy()
    shop = demo.generate(args.users, args.items, args.events, 42)
    events, items = shop.events, shop.items
    params = {"candidates": 200, "cuts": 1, "trees": args.trees, "max_train_users": 2_000}
    started = time.perf_counter()
    model = create_model("ranker", params).fit(events, items)
    fit_seconds = time.perf_counter() - started
    console.print(f"fitted in {fit_seconds:.1f} s; serving: {model.validation['served']}")  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    users = rng.choice(len(model.user_map), args.requests, replace=True)
    samples = []
    for user in users:
        history = model.history(int(user))
        clock = time.perf_counter()
        model.score_history(history)
        samples.append(time.perf_counter() - clock)
    result = {
        "load_average_1m_at_start": load,
        "items": len(model.item_map),
        "events": events.num_rows,
        "ranker_params": params,
        "fit_seconds": round(fit_seconds, 1),
        "served": model.validation["served"],  # type: ignore[attr-defined]
        "score_history_ms": percentiles_ms(samples),
    }
    console.print(result)
    write_results("ranker_latency", result)


if __name__ == "__main__":
    main()
