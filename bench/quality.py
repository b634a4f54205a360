"""Offline quality leaderboard: every model on public data and the synthetic shop.

For each dataset (MovieLens ml-latest-small and UCI Online Retail from ../shared/data, skipped
when absent, plus ``demo.generate()`` with its defaults), every registered model is fitted with
its default params (and the catalog, for the models that use item features) on the first 80% of
events by time and scored on the last 20% with ``training.holdout_metrics``: full-catalog
ranking, seen items excluded, items first seen in the test window left out of the targets and
of the catalog the fit gets. ``--split leave-last`` instead holds out each user's last basket
(the events sharing their last timestamp): next-basket prediction, where GRU4Rec should beat
item2vec and popularity.

``--tune MODEL ...`` adds a "MODEL tuned" row per model: the product's own Optuna search
(``tuning.search.tune``, NDCG@10, a validation part carved from the training part by the same
split as the test part: a time window, or each user's last basket before the test one) with
``--tune-trials`` trials, then the best params fitted and scored once on the test part. The
product bar: the best tuned model beats untuned ALS in NDCG@10 on every dataset.

Extra recipes can be added as rows, e.g. candidate defaults:

    python bench/quality.py [--datasets demo ml-latest-small] [--models popular als ease]
        [--split leave-last --name NAME] [--tune als ease --tune-trials 20]
        [--variant 'als tuned={"alpha": 10}'] [--variant 'bpr fast={"learning_rate": 0.1}']
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from typing import Any

import _datasets
from _common import WORK, Recipe, console, parse_variant, table, warn_if_busy, write_results
from recsys_lite.evaluation.split import SplitMethod
from recsys_lite.models import MODELS
from recsys_lite.training import holdout_metrics

NAME = "quality"
COLUMNS = ("ndcg@10", "hr@10", "recall@10", "map@10", "coverage@10")


TUNING_METRIC = "ndcg@10"


def evaluate(
    dataset: _datasets.Dataset, recipe: Recipe, split: SplitMethod, **extra: Any
) -> dict[str, Any]:
    console.print(f"  {dataset.name}: {recipe.label}...")
    result = holdout_metrics(
        recipe.model,
        recipe.params,
        dataset.events,
        dataset.items,
        split_method=split,
        test_size=0.2,
        show_progress=True,
    )
    return {
        "recipe": recipe.label,
        "model": recipe.model,
        "params": recipe.params,
        **{name: result["metrics"][name] for name in COLUMNS},
        "metrics": result["metrics"],
        "train_seconds": result["train_seconds"],
        "evaluate_seconds": result["seconds"],
        "users_evaluated": result["users_evaluated"],
        "cold_start_users": result["cold_start"]["users"],
        "test_events": result["test_events"],
        "split": result["split"],
        **extra,
    }


def tuned(
    dataset: _datasets.Dataset, model: str, trials: int, split: SplitMethod
) -> dict[str, Any]:
    """The product's Optuna search on a validation part carved from the training part by the
    same split as the test part, then the winner scored once on the test part."""
    from recsys_lite.tuning.search import tune

    study_path = WORK / "quality" / dataset.name / f"{model}.study.jsonl"
    study_path.unlink(missing_ok=True)  # a fresh study: the benchmark measures one search
    started = time.perf_counter()
    outcome = tune(
        model,
        dataset.events,
        dataset.items,
        metric=TUNING_METRIC,
        trials=trials,
        test_size=0.2,
        study_path=study_path,
        split_method=split,
    )
    search_seconds = round(time.perf_counter() - started, 1)
    recipe = Recipe(f"{model} tuned", model, outcome.best_params)
    return evaluate(
        dataset,
        recipe,
        split,
        tuning={
            "trials": trials,
            "metric": TUNING_METRIC,
            "validation_value": outcome.best_value,
            "search_seconds": search_seconds,
        },
    )


def verdicts(rows: list[dict[str, Any]], split: SplitMethod) -> dict[str, Any]:
    ndcg = {r["recipe"]: r["ndcg@10"] for r in rows}
    found: dict[str, Any] = {
        "beats_popular": {
            label: value > ndcg["popular"] for label, value in ndcg.items() if label != "popular"
        }
    }
    tuned_rows = [r for r in rows if "tuning" in r]
    if tuned_rows and "als" in ndcg:
        best = max(tuned_rows, key=lambda r: r["ndcg@10"])
        found["best_tuned"] = best["recipe"]
        found["best_tuned_beats_untuned_als"] = best["ndcg@10"] > ndcg["als"]
    if split == "leave-last" and {"gru4rec", "item2vec", "popular"} <= ndcg.keys():
        found["gru4rec_beats_item2vec_and_popular"] = ndcg["gru4rec"] > max(
            ndcg["item2vec"], ndcg["popular"]
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL, default=_datasets.ALL)
    models = list(MODELS)
    parser.add_argument("--models", nargs="+", choices=models, default=models)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument("--tune", nargs="+", choices=models, default=[], help="models to tune")
    parser.add_argument("--tune-trials", type=int, default=20)
    # temporal is the product's default and the benchmark's; leave-last (each user's last event)
    # is next-item prediction, and a second opinion where a global cut leaves few test users
    parser.add_argument("--split", choices=("temporal", "leave-last"), default="temporal")
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    start_load = warn_if_busy()
    recipes = [Recipe(m, m, None) for m in dict.fromkeys(["popular", *args.models])]
    recipes += args.variant

    results: dict[str, Any] = {}

    def save() -> None:
        # after every dataset, so a long run that stops keeps what it measured
        write_results(
            args.name,
            {
                "split": {"method": args.split, "test_size": 0.2, "leave_last_n": 1},
                "load_average_1m_at_start": start_load,
                "recipes": [r.__dict__ for r in recipes],
                "tuned_models": args.tune,
                "tune_trials": args.tune_trials if args.tune else 0,
                "datasets": results,
                "complete": len(results) == len(args.datasets),
            },
        )

    for name in args.datasets:
        dataset = _datasets.prepare(name)
        if dataset is None:
            results[name] = {"skipped": "source folder absent"}
            save()
            continue
        counts = dataset.store.counts()
        rows = [evaluate(dataset, recipe, args.split) for recipe in recipes]
        rows += [tuned(dataset, model, args.tune_trials, args.split) for model in args.tune]
        results[name] = {"counts": counts, "rows": rows, "verdicts": verdicts(rows, args.split)}
        first = rows[0]
        console.print(
            f"{name}: {counts['events']:,} events, {counts['users']:,} users,"
            f" {counts['items_with_events']:,} items; test: {first['test_events']:,} events,"
            f" {first['users_evaluated']:,} known users evaluated,"
            f" {first['cold_start_users']:,} new users (popular fallback, not in the table),"
            f" {first['split']['new_item_events']:,} events of {first['split']['new_items']:,}"
            " items first seen in the test part left out"
        )
        console.print(
            table(
                f"{name} ({args.split} split)",
                ["recipe", "NDCG@10", "HR@10", "Recall@10", "MAP@10", "coverage@10", "train s"],
                [[r["recipe"], *(r[c] for c in COLUMNS), r["train_seconds"]] for r in rows],
            )
        )
        console.print(results[name]["verdicts"])
        save()


if __name__ == "__main__":
    main()
