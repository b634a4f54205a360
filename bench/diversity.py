"""What does variety cost in accuracy? NDCG@10 and intra-list diversity of ALS's lists
re-ranked with MMR at diversity_lambda 1.0 (the model's order), 0.8 and 0.5.

Each dataset is split per user (leave-last: a user's last basket is the test, as in
quality.py's next-basket table, which has hundreds of test users where the temporal split of
ml-latest-small has 28); ALS with its default params is fitted on the rest. For every test user
the served pipeline runs offline: the 30 best unseen items by exact score (the pool /recommend
re-ranks for k = 10), then ``ranking.diversity.diversify`` down to 10 with the model's own item
vectors, as /recommend does with diversity_lambda. Reported per lambda: NDCG@10 (binary
gains), the share of distinct categories in a list and the mean pairwise cosine distance of its
items' ALS vectors.

Categories: MovieLens genres (a movie's first listed genre) and the demo shop's categories.
Online Retail has no category column and none is derived here (its descriptions are free
text): only the vector distance is reported for it.

    python bench/diversity.py [--datasets ml-latest-small online_retail demo] [--name NAME]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from typing import Any

import numpy as np

import _datasets
from _common import console, table, warn_if_busy, write_results
from recsys_lite.evaluation.metrics import ndcg
from recsys_lite.evaluation.split import leave_last_split
from recsys_lite.models import create_model
from recsys_lite.models.types import align_catalog
from recsys_lite.ranking.diversity import diversify, intra_list_diversity
from recsys_lite.serving.lists import pool_size
from recsys_lite.serving.schemas import RecommendQuery

NAME = "diversity"
LAMBDAS = (1.0, 0.8, 0.5)
K = 10
POOL = pool_size(RecommendQuery(user_id="u", k=K, diversity_lambda=0.5))  # as /recommend


def measure(dataset: _datasets.Dataset) -> dict[str, Any]:
    split = leave_last_split(dataset.events, 1)
    started = time.perf_counter()
    model = create_model("als").fit(split.train, dataset.items)
    fit_seconds = time.perf_counter() - started
    catalog = align_catalog(dataset.items, model.item_map) if dataset.items.num_rows else None
    categories = (
        np.array(catalog.column("category").to_pylist(), dtype=object)
        if catalog is not None and "category" in catalog.column_names
        else None
    )
    has_categories = categories is not None and any(c is not None for c in categories)
    unit = model._unit_vectors()
    assert unit is not None
    test = split.test
    targets: dict[str, set[int]] = {}
    for user, item in zip(
        test.column("user_id").to_pylist(), test.column("item_id").to_pylist(), strict=True
    ):
        index = model.item_map.get(item)
        if index is not None and model.knows_user(user):
            targets.setdefault(user, set()).add(index)
    users = [
        u
        for u, items in targets.items()
        if items - set(model.seen_items(model.user_map.index(u)).tolist())
    ]
    rows: dict[float, dict[str, list[float]]] = {
        lam: {"ndcg": [], "share": [], "distance": []} for lam in LAMBDAS
    }
    for user in users:
        ranked = model.recommend(user, POOL, use_index=False)
        seen = set(model.seen_items(model.user_map.index(user)).tolist())
        relevant = targets[user] - seen
        for lam in LAMBDAS:
            pool_categories = (
                categories[ranked.items] if has_categories and categories is not None else None
            )
            order = diversify(ranked.items, ranked.scores, unit[ranked.items], lam, None, K)
            shown = ranked.items[order]
            hits = np.array([[item in relevant for item in shown.tolist()]], dtype=np.float64)
            rows[lam]["ndcg"].append(float(ndcg(hits, np.array([len(relevant)]), K)[0]))
            share, distance = intra_list_diversity(
                unit[shown], pool_categories[order] if pool_categories is not None else None
            )
            if share is not None:
                rows[lam]["share"].append(share)
            if distance is not None:
                rows[lam]["distance"].append(distance)
    return {
        "test_users": len(users),
        "items": len(model.item_map),
        "fit_seconds": round(fit_seconds, 2),
        "categories": bool(has_categories),
        "by_lambda": {
            str(lam): {
                "ndcg@10": round(float(np.mean(v["ndcg"])), 4),
                "distinct_category_share": round(float(np.mean(v["share"])), 4)
                if v["share"]
                else None,
                "mean_pairwise_distance": round(float(np.mean(v["distance"])), 4),
            }
            for lam, v in rows.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(_datasets.ALL))
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args()
    start_load = warn_if_busy()
    results: dict[str, Any] = {}
    for name in args.datasets:
        dataset = _datasets.prepare(name)
        if dataset is None:
            continue
        console.print(f"{name}: {dataset.events.num_rows:,} events")
        results[name] = measure(dataset)
    console.print(
        table(
            "ALS, leave-last split: NDCG@10 and intra-list diversity per diversity_lambda",
            [
                "dataset (test users)",
                "lambda",
                "NDCG@10",
                "distinct categories",
                "pairwise distance",
            ],
            [
                [
                    f"{name} ({r['test_users']:,})",
                    lam,
                    v["ndcg@10"],
                    "n/a" if v["distinct_category_share"] is None else v["distinct_category_share"],
                    v["mean_pairwise_distance"],
                ]
                for name, r in results.items()
                for lam, v in r["by_lambda"].items()
            ],
        )
    )
    write_results(
        args.name,
        {
            "model": "als (default params)",
            "split": "leave-last 1 basket",
            "k": K,
            "pool": POOL,
            "lambdas": list(LAMBDAS),
            "load_average_1m_at_start": start_load,
            "datasets": results,
        },
    )


if __name__ == "__main__":
    main()
