"""Spark ALS against the embedded trainer (implicit) on the same split: NDCG@10 and time.

Both fit the default ``als`` recipe (64 factors, 15 iterations, alpha 2, regularization 0.05)
on the training part of one split and are scored by the same full-ranking evaluator: on the
synthetic shop a temporal split (the last 20% of events held out), on ml-latest-small each
user's last basket held out (a temporal cut there leaves a few dozen users to evaluate: most
MovieLens users rated everything in one sitting). Spark runs in ``local[2]`` (the
machine's two cores); the session start, which a one-off ``train --engine spark`` pays once,
is timed apart from the fits. On ml-latest-small Spark also fits with the regularisation
mapping that equals implicit's penalty for a user of average activity (``mean_user``, see
engines/spark.py), to show why the engine passes lambda unchanged.

    python bench/spark_als.py [--datasets shop1m ml-latest-small] [--master local[2]]
"""

from __future__ import annotations

import os

# One BLAS thread: implicit runs its own thread pool, and BLAS threads underneath only contend
# with it. Set before numpy loads OpenBLAS, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
from typing import Any

import pyarrow as pa

import _datasets
from _common import (
    console,
    empty_work_folder,
    million_event_shop,
    table,
    timed,
    verdict,
    warn_if_busy,
    write_results,
)
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.engines.spark import RegScaling, SparkALSModel, spark_session
from recsys_lite.evaluation.split import SplitMethod
from recsys_lite.models import Recommender, create_model
from recsys_lite.training import holdout_metrics

NAME = "spark_als"
BAR = 0.05  # Spark's NDCG@10 may fall at most this fraction below the embedded trainer's
ITERATIONS = 15  # the als default


def shop_events() -> pa.Table:
    events_file, items_file = million_event_shop()
    store = Store(empty_work_folder("spark_als", "shop1m") / "store.db")
    ingest(store, events_file, items_file, show_progress=False)
    return store.read_events()


def fit_and_score(
    events: pa.Table, engine: str, scaling: RegScaling, master: str, split: SplitMethod
) -> dict[str, Any]:
    def factory(name: str, params: dict[str, Any] | None) -> Recommender:
        if engine == "embedded":
            return create_model(name, params)
        return SparkALSModel(params, master=master, scaling=scaling)

    result = holdout_metrics(
        "als", None, events, split_method=split, test_size=0.2, model_factory=factory
    )
    fit = result["train_seconds"]
    return {
        "engine": engine,
        "reg_mapping": scaling if engine == "spark" else None,
        "ndcg@10": round(result["metrics"]["ndcg@10"], 4),
        "recall@10": round(result["metrics"]["recall@10"], 4),
        "fit_seconds": fit,
        # the whole fit over the iterations: Spark's includes the export and its blocking
        "fit_seconds_per_iteration": round(fit / ITERATIONS, 3),
        "users_evaluated": result["users_evaluated"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["shop1m", "ml-latest-small"])
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    start_load = warn_if_busy()

    with timed() as session_time:
        spark_session(args.master).sparkContext.setLogLevel("ERROR")
    console.print(f"Spark session started in {session_time.seconds:.1f}s")

    results: dict[str, Any] = {}
    rows = []
    for name in args.datasets:
        if name == "shop1m":
            events = shop_events()
        else:
            dataset = _datasets.prepare(name)
            if dataset is None:
                continue
            events = dataset.events
        split: SplitMethod = "temporal" if name == "shop1m" else "leave-last"
        runs = [fit_and_score(events, "embedded", "none", args.master, split)]
        runs.append(fit_and_score(events, "spark", "none", args.master, split))
        if name != "shop1m":
            runs.append(fit_and_score(events, "spark", "mean_user", args.master, split))
        embedded = runs[0]["ndcg@10"]
        for run in runs:
            run["ndcg_vs_embedded"] = round(run["ndcg@10"] / embedded, 4)
            rows.append(
                (
                    name,
                    run["engine"] + (f" ({run['reg_mapping']})" if run["reg_mapping"] else ""),
                    run["ndcg@10"],
                    run["ndcg_vs_embedded"],
                    run["fit_seconds"],
                    run["fit_seconds_per_iteration"],
                )
            )
        spark_run = runs[1]
        results[name] = {
            "events": events.num_rows,
            "split": split,
            "runs": runs,
            "spark_within_bar": spark_run["ndcg@10"] >= (1 - BAR) * embedded,
            "spark_slower_by": round(spark_run["fit_seconds"] / runs[0]["fit_seconds"], 1),
        }
        console.print(
            f"{name}: Spark NDCG@10 within {BAR:.0%} of the embedded trainer:"
            f" {verdict(results[name]['spark_within_bar'])}"
        )

    console.print(
        table(
            "ALS: embedded (implicit) vs Spark local[2], same split",
            ["data", "engine", "NDCG@10", "vs embedded", "fit s", "fit s / iteration"],
            rows,
        )
    )
    write_results(
        NAME,
        {
            "master": args.master,
            "params": create_model("als").params.model_dump(mode="json"),
            "spark_session_start_seconds": round(session_time.seconds, 1),
            "bar": f"Spark NDCG@10 >= {1 - BAR:.0%} of the embedded trainer's",
            "load_average_1m_at_start": start_load,
            "datasets": results,
        },
    )


if __name__ == "__main__":
    main()
