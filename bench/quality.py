"""Offline quality leaderboard: popularity, ALS and BPR on public data and the synthetic shop.

For each dataset (MovieLens ml-latest-small and UCI Online Retail from ../shared/data, skipped
when absent, plus ``demo.generate()`` with its defaults), every model is fitted on the first 80%
of events by time and scored on the last 20% with ``training.holdout_metrics``: full-catalog
ranking, seen items excluded. The product target is that ALS beats popularity in NDCG@10 on
every dataset.

Extra recipes can be added as rows, e.g. candidate defaults:

    python bench/quality.py [--datasets demo ml-latest-small] [--split leave-last --name NAME]
        [--variant 'als tuned={"alpha": 10}'] [--variant 'bpr fast={"learning_rate": 0.1}']
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
from dataclasses import dataclass
from typing import Any

import _datasets
from _common import console, table, warn_if_busy, write_results
from recsys_lite.evaluation.split import SplitMethod
from recsys_lite.training import holdout_metrics

NAME = "quality"
COLUMNS = ("ndcg@10", "hr@10", "recall@10", "map@10", "coverage@10")


@dataclass(frozen=True)
class Recipe:
    label: str
    model: str
    params: dict[str, Any] | None


DEFAULT_RECIPES = (
    Recipe("popular", "popular", None),
    Recipe("als", "als", None),
    Recipe("bpr", "bpr", None),
)


def parse_variant(text: str) -> Recipe:
    """``MODEL LABEL=JSON``, e.g. ``als tuned={"alpha": 10}``."""
    try:
        head, params = text.split("=", 1)
        model, label = head.split()
        parsed = json.loads(params)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'MODEL LABEL=JSON', got {text!r}") from exc
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("the params must be a JSON object")
    return Recipe(f"{model} {label}", model, parsed)


def yes_no(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


def evaluate(
    dataset: _datasets.Dataset, recipes: list[Recipe], split: SplitMethod
) -> list[dict[str, Any]]:
    rows = []
    for recipe in recipes:
        console.print(f"  {dataset.name}: {recipe.label}...")
        result = holdout_metrics(
            recipe.model, recipe.params, dataset.events, split_method=split, test_size=0.2
        )
        rows.append(
            {
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
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL, default=_datasets.ALL)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    # temporal is the product's default and the benchmark's; leave-last (each user's last event)
    # is a second opinion where a global cut leaves few known test users
    parser.add_argument("--split", choices=("temporal", "leave-last"), default="temporal")
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    start_load = warn_if_busy()
    recipes = [*DEFAULT_RECIPES, *args.variant]

    results: dict[str, Any] = {}
    for name in args.datasets:
        dataset = _datasets.prepare(name)
        if dataset is None:
            results[name] = {"skipped": "source folder absent"}
            continue
        counts = dataset.store.counts()
        rows = evaluate(dataset, recipes, args.split)
        results[name] = {"counts": counts, "rows": rows}
        first = rows[0]
        # few known test users make a noisy mean (ml-latest-small's temporal cut leaves ~30)
        console.print(
            f"{name}: {counts['events']:,} events, {counts['users']:,} users,"
            f" {counts['items_with_events']:,} items; test: {first['test_events']:,} events,"
            f" {first['users_evaluated']:,} known users evaluated,"
            f" {first['cold_start_users']:,} new users (popular fallback, not in the table)"
        )
        console.print(
            table(
                f"{name} ({args.split} split)",
                ["recipe", "NDCG@10", "HR@10", "Recall@10", "MAP@10", "coverage@10", "train s"],
                [[r["recipe"], *(r[c] for c in COLUMNS), r["train_seconds"]] for r in rows],
            )
        )

    verdicts = {}
    for name, result in results.items():
        if "rows" not in result:
            continue
        ndcg = {r["recipe"]: r["ndcg@10"] for r in result["rows"]}
        verdicts[name] = {
            label: value > ndcg["popular"] for label, value in ndcg.items() if label != "popular"
        }
    labels = [r.label for r in recipes if r.model != "popular"]
    console.print(
        table(
            "beats popularity in NDCG@10?",
            ["dataset", *labels],
            [[name, *(yes_no(v[label]) for label in labels)] for name, v in verdicts.items()],
        )
    )
    write_results(
        args.name,
        {
            "split": {"method": args.split, "test_size": 0.2, "leave_last_n": 1},
            "load_average_1m_at_start": start_load,
            "recipes": [r.__dict__ for r in recipes],
            "datasets": results,
            "beats_popular_ndcg@10": verdicts,
            "als_beats_popular_everywhere": all(v.get("als", False) for v in verdicts.values()),
        },
    )


if __name__ == "__main__":
    main()
