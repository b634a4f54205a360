"""The LightGBM ranker against each of its retrievers, NDCG@10 on a temporal holdout.

For each dataset (ml-latest-small and online_retail from ../shared/data when present, and the
demo shop), the first 80% of events by time train every model and the last 20% score it, as in
bench/quality.py. Rows: each retriever fitted alone, trending popularity, and the ranker over
those retrievers. The ranker's own validation (inside the training 80%: features before its
cut, labels after) is reported too: recall of each source's top N and of the merged set, the
validation NDCG@10 of each source and of the booster, and what it decided to serve.

    python bench/ranker.py [--datasets demo] [--retrievers als ease] [--candidates 200]
        [--cuts 3 --label-fraction 0.1] [--name ranker]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
from typing import Any

import _datasets
from _common import console, table, warn_if_busy, write_results
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.split import temporal_split
from recsys_lite.models import create_model

NAME = "ranker"
EASE_MAX_ITEMS = 30_000  # EASE holds an items x items matrix


def run(
    dataset: _datasets.Dataset, retrievers: list[str], ranker_params: dict[str, Any]
) -> dict[str, Any]:
    split = temporal_split(dataset.events, 0.2)
    catalog = split.catalog(dataset.items)
    n_items = len(set(split.train.column("item_id").to_pylist()))
    usable = [r for r in retrievers if r != "ease" or n_items <= EASE_MAX_ITEMS]
    rows: dict[str, dict[str, Any]] = {}
    recipes = [(name, name, None) for name in usable]
    recipes.append(("trending", "popular", {"window_days": 7.0}))
    recipes.append(("ranker", "ranker", {**ranker_params, "retrievers": usable}))
    ranker_validation: dict[str, Any] = {}
    for label, name, params in recipes:
        console.print(f"  {dataset.name}: {label}...")
        model = create_model(name, params).fit(split.train, catalog)
        result = evaluate_model(model, split.test)
        rows[label] = {"ndcg@10": result["metrics"]["ndcg@10"], **result["metrics"]}
        if name == "ranker":
            ranker_validation = model.validation  # type: ignore[attr-defined]
    ranker = rows["ranker"]["ndcg@10"]
    singles = {label: row["ndcg@10"] for label, row in rows.items() if label != "ranker"}
    best = max(singles, key=singles.__getitem__)
    return {
        "split": split.description,
        "retrievers": usable,
        "rows": rows,
        "ranker_validation": ranker_validation,
        "wins": [label for label, value in singles.items() if ranker > value],
        "losses": [label for label, value in singles.items() if ranker <= value],
        "best_single": best,
        "margin_over_best_single": ranker - singles[best],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL, default=_datasets.ALL)
    parser.add_argument("--retrievers", nargs="+", default=["als", "ease"])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--trees", type=int, default=150)
    parser.add_argument("--max-train-users", type=int, default=2_000)
    parser.add_argument("--cuts", type=int, default=3)
    parser.add_argument("--label-fraction", type=float, default=0.1)
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    load = warn_if_busy()
    params = {
        "candidates": args.candidates,
        "trees": args.trees,
        "max_train_users": args.max_train_users,
        "cuts": args.cuts,
        "label_fraction": args.label_fraction,
    }
    results: dict[str, Any] = {}
    for name in args.datasets:
        dataset = _datasets.prepare(name)
        if dataset is None:
            results[name] = {"skipped": "source folder absent"}
            continue
        results[name] = run(dataset, args.retrievers, params)
        found = results[name]
        console.print(
            table(
                f"{name}: NDCG@10 (temporal 80/20)",
                ["model", "NDCG@10", "HR@10", "Recall@10"],
                [
                    [label, row["ndcg@10"], row["hr@10"], row["recall@10"]]
                    for label, row in found["rows"].items()
                ],
            )
        )
        console.print(found["ranker_validation"])
        write_results(
            args.name,
            {
                "load_average_1m_at_start": load,
                "ranker_params": params,
                "datasets": results,
                "complete": len(results) == len(args.datasets),
            },
        )


if __name__ == "__main__":
    main()
