"""In-process latency of the ranker's scoring for one shopper on a 100k-item catalog.

A synthetic shop (``demo.generate``) with 100,000 items; the ranker over ALS with 200
candidates per source (ALS, trending, bought together) is fitted once, then a shopper's full
scoring (``score_history``: every source, the merge, the features, the booster) is timed for
known shoppers' histories, one at a time, and so is ``recommend`` for known shoppers (what a
/recommend for a shopper without new events runs). This is the model's part of an answer,
without HTTP; bench/ranker_serving.py measures it through the server.

The CPU time of each stage of ``recommend`` is reported too (process time, which a busy shared
machine stretches less than wall time): each source's top N (ALS through its HNSW index when
the model has one, else its scores over the catalog; trending from its precomputed order;
bought-together from the co-visitation table), the merge of the three, the features, the
booster, and the final top k over the candidates.

The booster alone is timed on the feature rows it was given in those requests: its trees
compiled to native code (ranking/compiled_trees.py, what the model serves), LightGBM with the
one thread the model asks for where they cannot be compiled, and LightGBM with its default
threads; with how long compiling takes, how long loading the compiled code from its cache
takes, and whether the scores and each request's top 10 are LightGBM's. ``--booster-only``
measures that alone (after the fit) and writes ``ranker_booster.json``.

    python bench/ranker_latency.py [--users 20000 --events 400000 --requests 300]
    python bench/ranker_latency.py --booster-only
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from _common import console, percentiles_ms, table, warn_if_busy, write_results
from recsys_lite.data import demo
from recsys_lite.models import create_model
from recsys_lite.models.retrieval import listed_top
from recsys_lite.models.types import Ranked
from recsys_lite.ranking.candidates import best_listed, merge_tops
from recsys_lite.ranking.compiled_trees import CompiledTrees
from recsys_lite.ranking.ranker import RankerModel, _booster

REPEAT = 20  # scorings of each request's rows per timing: one takes about a tenth of a ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--trees", type=int, default=150)
    parser.add_argument("--booster-only", action="store_true", help="time the booster alone")
    args = parser.parse_args()
    load = warn_if_busy()
    shop = demo.generate(args.users, args.items, args.events, 42)
    events, items = shop.events, shop.items
    params = {"candidates": 200, "cuts": 1, "trees": args.trees, "max_train_users": 2_000}
    started = time.perf_counter()
    model = create_model("ranker", params).fit(events, items)
    fit_seconds = time.perf_counter() - started
    assert isinstance(model, RankerModel)
    console.print(f"fitted in {fit_seconds:.1f} s; serving: {model.validation['served']}")
    rng = np.random.default_rng(0)
    users = rng.choice(len(model.user_map), args.requests, replace=True)
    if args.booster_only:
        booster = booster_cpu(model, request_rows(model, users))
        console.print(booster)
        write_results(
            "ranker_booster",
            {
                "load_average_1m_at_start": load,
                "items": len(model.item_map),
                "events": events.num_rows,
                "ranker_params": params,
                "served": model.validation["served"],
                "booster_predict_cpu_ms": booster,
            },
        )
        return
    samples, cpu = [], []
    for user in users:
        history = model.history(int(user))
        clock, cpu_clock = time.perf_counter(), time.process_time()
        model.score_history(history)
        samples.append(time.perf_counter() - clock)
        cpu.append(time.process_time() - cpu_clock)
    known, known_cpu = [], []
    for user in users:
        user_id = model.user_map.ids[user]
        clock, cpu_clock = time.perf_counter(), time.process_time()
        model.recommend(user_id, 10)
        known.append(time.perf_counter() - clock)
        known_cpu.append(time.process_time() - cpu_clock)
    assert isinstance(model, RankerModel)
    stages, rows = stage_cpu(model, users)
    booster = booster_cpu(model, request_rows(model, users))
    console.print(
        table(
            "CPU per request by stage of recommend (ms, mean)",
            ["stage", "ms"],
            [[name, ms] for name, ms in stages.items()],
        )
    )
    result = {
        "load_average_1m_at_start": load,
        "items": len(model.item_map),
        "events": events.num_rows,
        "ranker_params": params,
        "fit_seconds": round(fit_seconds, 1),
        "served": model.validation["served"],
        "score_history_ms": percentiles_ms(samples),
        "score_history_cpu_ms": percentiles_ms(cpu),
        "recommend_known_user_ms": percentiles_ms(known),
        "recommend_known_user_cpu_ms": percentiles_ms(known_cpu),
        "recommend_cpu_ms_by_stage": stages,
        "candidates_per_request_mean": rows,
        "booster_predict_cpu_ms": booster,
    }
    console.print(result)
    write_results("ranker_latency", result)


def stage_cpu(model: RankerModel, users: np.ndarray) -> tuple[dict[str, float], float]:
    """Mean CPU ms of each stage of ``recommend`` for these known users, run one by one as
    the model runs them (the stages are the model's own functions), and the mean number of
    candidates the booster scored."""
    stage = model.stage
    spent = dict.fromkeys(
        [
            "als_top_n",
            "trending_top_n",
            "bought_together",
            "merge",
            "features",
            "booster",
            "top_k",
        ],
        0.0,
    )

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        started = time.process_time()
        yield
        spent[name] += time.process_time() - started

    rows = 0
    n, recent = model.params.candidates, model.params.recent_items
    for user in users.tolist():
        history, seen = model.history(user), model.seen_items(user)
        ids = model.user_map.ids[[user]]
        with timed("als_top_n"):
            als = stage.retriever_tops(0, ids, [history], [seen], n)[0]
        with timed("trending_top_n"):
            trending = stage.trending_top(n, seen)
        with timed("bought_together"):
            together = best_listed(*stage.covisit.together(history.items[-recent:]), n, seen)
        tops = [als, trending, together]
        with timed("merge"):
            merge_tops(tops, n)
        with timed("features"):  # merges again: the merge's time is taken off below
            found, features = model._features(stage, tops, history)
        with timed("booster"):
            predicted = model._predict(features)
        with timed("top_k"):  # as _candidates_for and recommend finish: k of the candidates
            below = np.full(len(seen), predicted.min() - 1.0, dtype=np.float32)
            listed = Ranked(np.concatenate([found.items, seen]), np.concatenate([predicted, below]))
            listed_top(listed, 10, seen, None)
        rows += len(found.items)
    spent["features"] -= spent["merge"]
    per_request = {k: round(v * 1000 / len(users), 3) for k, v in spent.items()}
    per_request["total"] = round(sum(per_request.values()), 3)
    return per_request, round(rows / len(users), 1)


def request_rows(model: RankerModel, users: np.ndarray) -> list[np.ndarray]:
    """The feature rows the booster is given by ``recommend`` for these known shoppers, one
    array per request."""
    rows: list[np.ndarray] = []
    predict = model._predict

    def recording(features: np.ndarray) -> np.ndarray:
        rows.append(features.copy())
        return predict(features)

    model._predict = recording  # type: ignore[method-assign]
    try:
        for user in users.tolist():
            model.recommend(model.user_map.ids[user], 10)
    finally:
        del model._predict
    assert rows, f"the booster scored no request: the model serves {model.validation['served']}"
    return rows


def booster_cpu(model: RankerModel, requests: list[np.ndarray]) -> dict[str, Any]:
    """CPU ms per request of the booster on each request's rows: the compiled trees as the
    model serves them, LightGBM with one thread (what serves where they cannot be compiled)
    and with its default threads (every core); each request's rows are scored ``REPEAT``
    times, the time divided. Then whether the compiled scores are LightGBM's."""
    booster = _booster(model.booster_text)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        compiled = CompiledTrees.build(model.booster_text, Path(folder))
        compile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        cached = CompiledTrees.build(model.booster_text, Path(folder))
        load_seconds = time.perf_counter() - started
    assert compiled is not None and cached is not None, "the trees did not compile (see log)"
    model._compiled = cached

    def lightgbm(**kwargs: Any) -> Callable[[np.ndarray], np.ndarray]:
        return lambda rows: np.asarray(booster.predict(rows, **kwargs), np.float32)

    scorers = {
        "compiled": model._predict,
        "lightgbm_num_threads_1": lightgbm(num_threads=1),
        "lightgbm_default_threads": lightgbm(),
    }
    out: dict[str, Any] = {
        "requests": len(requests),
        "rows_per_request_mean": round(float(np.mean([len(r) for r in requests])), 1),
        "features": int(requests[0].shape[1]),
        "trees": booster.num_trees(),
        "repeat": REPEAT,
    }
    for name, score in scorers.items():
        spent = []
        for rows in requests:
            score(rows)
            started = time.process_time()
            for _ in range(REPEAT):
                score(rows)
            spent.append((time.process_time() - started) / REPEAT)
        out[name] = percentiles_ms(spent)
    differences, same_scores, same_top = 0.0, 0, 0
    for rows in requests:
        ours = compiled.predict(rows)
        theirs = np.asarray(booster.predict(rows, num_threads=1), np.float64)
        differences = max(differences, float(np.abs(ours - theirs).max()))
        # the model ranks by float32 scores
        ours32, theirs32 = ours.astype(np.float32), theirs.astype(np.float32)
        same_scores += bool(np.array_equal(ours32, theirs32))
        same_top += bool(
            np.array_equal(
                np.argsort(-ours32, kind="stable")[:10], np.argsort(-theirs32, kind="stable")[:10]
            )
        )
    out["compiled_trees"] = {
        "library": f"lleaves {metadata.version('lleaves')}",
        "llvmlite": metadata.version("llvmlite"),
        "compile_seconds": round(compile_seconds, 2),
        "load_from_cache_seconds": round(load_seconds, 3),
        "max_abs_difference_float64": differences,
        "requests_with_equal_float32_scores": same_scores,
        "requests_with_equal_top_10": same_top,
    }
    return out


if __name__ == "__main__":
    main()
