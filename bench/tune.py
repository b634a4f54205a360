"""A small, staged parameter search for ALS and BPR defaults that hold on every dataset.

Tuning on the test period and then reporting it would flatter the winner, so the search runs on
a validation split inside the training part: the first 80% of events by time is split again
80/20 (with --split leave-last: each user's last event is the test, the one before it the
validation), and only the winner and the current defaults are then scored on the real test
part, as in bench/quality.py.

A recipe is ranked first by the number of datasets on which it beats popularity in NDCG@10, then
by the geometric mean of its NDCG@10 lifts over popularity (NDCG / popular NDCG), so that no one
dataset dominates. Stages, each starting from the previous best:

* ALS: alpha x regularization at 64 factors; factors 32/128; weighting (quantity ignored,
  BM25) x alpha.
* BPR: learning rate x iterations.

    python bench/tune.py [--models als bpr] [--datasets ...] [--split leave-last]
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
from typing import Any

import pyarrow as pa

import _datasets
from _common import console, table, timed, warn_if_busy, write_results
from recsys_lite.evaluation.split import SplitMethod, make_split
from recsys_lite.training import holdout_metrics

NAME = "tune"
ALPHAS = (1.0, 2.0, 5.0, 10.0, 20.0)
REGULARIZATIONS = (0.01, 0.05, 0.1, 1.0)
FACTORS = (32, 128)
WEIGHTINGS: tuple[dict[str, Any], ...] = (
    {"qty": "ignore"},
    {"scheme": "bm25"},
    {"qty": "ignore", "scheme": "bm25"},
)
BPR_LEARNING_RATES = (0.01, 0.05, 0.1)
BPR_ITERATIONS = (100, 200)


class Search:
    """Evaluates recipes on every dataset's validation split, once each."""

    def __init__(self, validation: dict[str, pa.Table], split: SplitMethod) -> None:
        self.validation = validation
        self.split = split
        self.baseline = {
            name: self._ndcg("popular", None, events)[0] for name, events in validation.items()
        }
        self.tried: dict[str, dict[str, Any]] = {}

    def score(self, model: str, params: dict[str, Any]) -> dict[str, Any]:
        key = json.dumps([model, params], sort_keys=True)
        if key not in self.tried:
            ndcg: dict[str, float] = {}
            seconds = 0.0
            for name, events in self.validation.items():
                ndcg[name], fit_seconds = self._ndcg(model, params, events)
                seconds += fit_seconds
            lifts = {n: ndcg[n] / max(self.baseline[n], 1e-9) for n in ndcg}
            self.tried[key] = {
                "model": model,
                "params": params,
                "ndcg@10": ndcg,
                "lift": {n: round(v, 4) for n, v in lifts.items()},
                "wins": sum(v > 1 for v in lifts.values()),
                "geomean_lift": round(_geomean(lifts.values()), 4),
                "train_seconds": round(seconds, 2),
            }
            entry = self.tried[key]
            shown = ", ".join(f"{n} {v:.3f}" for n, v in lifts.items())
            console.print(
                f"  {model} {json.dumps(params, sort_keys=True)}: wins {entry['wins']},"
                f" lift {entry['geomean_lift']:.3f} ({shown}; {seconds:.1f} s)"
            )
        return self.tried[key]

    def _ndcg(
        self, model: str, params: dict[str, Any] | None, events: pa.Table
    ) -> tuple[float, float]:
        result = holdout_metrics(model, params, events, split_method=self.split)
        return float(result["metrics"]["ndcg@10"]), float(result["train_seconds"])

    def best(self, model: str, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        scored = [self.score(model, params) for params in candidates]
        return max(scored, key=lambda entry: (entry["wins"], entry["geomean_lift"]))


def _geomean(values: Any) -> float:
    values = list(values)
    return math.exp(sum(math.log(max(v, 1e-9)) for v in values) / len(values))


def search_als(search: Search) -> dict[str, Any]:
    console.print("ALS stage 1: alpha x regularization at 64 factors")
    best = search.best(
        "als",
        [{"alpha": a, "regularization": r} for a in ALPHAS for r in REGULARIZATIONS],
    )
    console.print("ALS stage 2: factors")
    factors = [{**best["params"], "factors": f} for f in FACTORS]
    best = search.best("als", [best["params"], *factors])
    console.print("ALS stage 3: weighting x alpha")
    weighted = [{**best["params"], "alpha": a, "weighting": w} for w in WEIGHTINGS for a in ALPHAS]
    return search.best("als", [best["params"], *weighted])


def search_bpr(search: Search) -> dict[str, Any]:
    console.print("BPR: learning rate x iterations")
    return search.best(
        "bpr",
        [
            {"learning_rate": lr, "iterations": it}
            for lr in BPR_LEARNING_RATES
            for it in BPR_ITERATIONS
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("als", "bpr"), default=["als", "bpr"])
    parser.add_argument("--datasets", nargs="+", choices=_datasets.ALL, default=_datasets.ALL)
    parser.add_argument("--split", choices=("temporal", "leave-last"), default="temporal")
    parser.add_argument("--name", default=NAME, help="results file name (bench/results/NAME.json)")
    args = parser.parse_args()
    start_load = warn_if_busy()

    datasets = [d for d in map(_datasets.prepare, args.datasets) if d is not None]
    # the validation split lives wholly inside the training part of the final test split
    validation = {d.name: make_split(d.events, args.split, 0.2, 1).train for d in datasets}
    search = Search(validation, args.split)
    winners: dict[str, dict[str, Any]] = {}
    with timed() as searching:
        if "als" in args.models:
            winners["als"] = search_als(search)
        if "bpr" in args.models:
            winners["bpr"] = search_bpr(search)

    console.print("scoring the defaults and the winners on the test period")
    final: list[dict[str, Any]] = []
    recipes: list[tuple[str, str, dict[str, Any] | None]] = [("popular", "popular", None)]
    for model, winner in winners.items():
        recipes += [(model, f"{model} default", None), (model, f"{model} tuned", winner["params"])]
    for model, label, params in recipes:
        row: dict[str, Any] = {"recipe": label, "model": model, "params": params}
        for d in datasets:
            result = holdout_metrics(model, params, d.events, split_method=args.split)
            row[d.name] = {
                "ndcg@10": result["metrics"]["ndcg@10"],
                "train_seconds": result["train_seconds"],
            }
        final.append(row)

    console.print(
        table(
            f"test NDCG@10 ({args.split} split; train seconds)",
            ["recipe", *(d.name for d in datasets)],
            [
                [
                    r["recipe"],
                    *(
                        f"{r[d.name]['ndcg@10']:.4f} ({r[d.name]['train_seconds']:.1f})"
                        for d in datasets
                    ),
                ]
                for r in final
            ],
        )
    )
    for model, winner in winners.items():
        console.print(f"{model} winner on validation: {json.dumps(winner['params'])}")

    write_results(
        args.name,
        {
            "split": args.split,
            "load_average_1m_at_start": start_load,
            "search_seconds": round(searching.seconds, 1),
            "validation_popular_ndcg@10": search.baseline,
            "tried": list(search.tried.values()),
            "winners": winners,
            "test": final,
        },
    )


if __name__ == "__main__":
    main()
