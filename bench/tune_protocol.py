"""The product's tuner against a plain random search, under the public benchmark's protocol.

On MovieLens ml-latest-small with leave-last evaluation (each user's last basket is the test),
two searches of the same ALS get the same number of trials and are scored on the same test part:

* ours: ``tuning.search.optimize`` as ``recsys-lite optimize als --split leave-last --metric
  ndcg@10 --trials N`` runs it (TPE over tuning/spaces/als.toml, validation = each user's last
  basket before the test one), then the winner scored once on the test part;
* random: N configurations drawn uniformly (log-uniformly for scales) with a fixed seed from a
  standard space (factors 32..256, regularization 1e-3..1, alpha 1..100, iterations 10..30),
  ranked on the same validation part, the best scored once on the test part. With several
  ``--seeds`` each seed is its own search, since one search's luck on 610 users' test baskets
  moves NDCG@10 by more than the searches differ; ours is compared with their median.

    python bench/tune_protocol.py [--trials 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The served artifact's text-search index (minutes on MovieLens's titles) is no part of ranking.
os.environ["SEARCH_INDEX"] = "off"

import argparse
import math
import time
from typing import Any

import numpy as np

import _datasets
from _common import console, empty_work_folder, table, warn_if_busy, write_results
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.split import leave_last_split
from recsys_lite.models import create_model
from recsys_lite.training import holdout_metrics
from recsys_lite.tuning.search import optimize

NAME = "tune_protocol"
DATASET = "ml-latest-small"
METRIC = "ndcg@10"
FULL_TRIALS = 20


def random_configs(trials: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)

    def log_uniform(low: float, high: float) -> float:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    return [
        {
            "factors": round(log_uniform(32, 256)),
            "regularization": log_uniform(1e-3, 1.0),
            "alpha": log_uniform(1.0, 100.0),
            "iterations": int(rng.integers(10, 31)),
        }
        for _ in range(trials)
    ]


def random_search(dataset: _datasets.Dataset, trials: int, seed: int) -> dict[str, Any]:
    # the same two cuts as the tuner: the test part first, the validation part from the rest
    validation = leave_last_split(leave_last_split(dataset.events, 1).train, 1)
    catalog = validation.catalog(leave_last_split(dataset.events, 1).catalog(dataset.items))
    started = time.perf_counter()
    scored = []
    for params in random_configs(trials, seed):
        model = create_model("als", params)
        model.fit(validation.train, catalog)
        value = float(evaluate_model(model, validation.test, ks=(10,))["metrics"][METRIC])
        scored.append({"params": params, "validation": value})
        console.print(f"random trial {len(scored)}: {value:.4f} {params}")
    best = max(scored, key=lambda row: row["validation"])
    search_seconds = time.perf_counter() - started
    test = holdout_metrics(
        "als", best["params"], dataset.events, dataset.items, split_method="leave-last", last_n=1
    )
    return {
        "best_params": best["params"],
        "validation_ndcg@10": best["validation"],
        "test_ndcg@10": test["metrics"][METRIC],
        "test_hr@10": test["metrics"]["hr@10"],
        "search_seconds": round(search_seconds, 1),
        "trials": scored,
    }


def ours(dataset: _datasets.Dataset, trials: int) -> dict[str, Any]:
    folder = empty_work_folder(NAME)
    started = time.perf_counter()
    outcome, result = optimize(
        dataset.store,
        "als",
        folder / "als",
        metric=METRIC,
        trials=trials,
        split_method="leave-last",
        last_n=1,
        study_path=folder / "study.jsonl",
        show_progress=False,
    )
    return {
        "best_params": outcome.best_params,
        "validation_ndcg@10": outcome.best_value,
        "test_ndcg@10": result.metrics["metrics"][METRIC],
        "test_hr@10": result.metrics["metrics"]["hr@10"],
        "seconds_with_final_fit": round(time.perf_counter() - started, 1),
        "trials": [
            {"validation": t.value, "params": t.params, "state": t.state.name}
            for t in outcome.study.trials
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=FULL_TRIALS, help="per search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="random searches")
    args = parser.parse_args()
    load = warn_if_busy()
    dataset = _datasets.prepare(DATASET)
    if dataset is None:
        return
    randoms = {seed: random_search(dataset, args.trials, seed) for seed in args.seeds}
    tuned = ours(dataset, args.trials)
    median = float(np.median([r["test_ndcg@10"] for r in randoms.values()]))
    verdict = "matches or beats" if tuned["test_ndcg@10"] >= median else "trails"
    console.print(
        table(
            f"{DATASET}, leave-last, {args.trials} trials each (test part)",
            ["search", "validation ndcg@10", "test ndcg@10", "test hr@10"],
            [
                [name, f"{r['validation_ndcg@10']:.4f}", f"{r['test_ndcg@10']:.4f}",
                 f"{r['test_hr@10']:.4f}"]
                for name, r in [
                    ("optimize als", tuned),
                    *((f"random search, seed {seed}", r) for seed, r in randoms.items()),
                ]
            ],
        )
    )  # fmt: skip
    console.print(f"optimize als {verdict} the random search (median test NDCG@10 {median:.4f})")
    write_results(
        NAME,
        {
            "dataset": DATASET,
            "protocol": "leave-last (each user's last basket is the test, the one before it the"
            " validation); full-catalog ranking, seen items excluded",
            "metric": METRIC,
            "trials_per_search": args.trials,
            "full_run": args.trials >= FULL_TRIALS,
            "reproduce": "python bench/tune_protocol.py --trials"
            f" {FULL_TRIALS} --seeds {' '.join(map(str, args.seeds))}",
            "load_average_1m_at_start": load,
            "optimize_als": tuned,
            "random_search": {str(seed): r for seed, r in randoms.items()},
            "random_search_median_test_ndcg@10": median,
            "verdict": f"optimize als {verdict} the random searches' median test NDCG@10",
        },
    )


if __name__ == "__main__":
    main()
