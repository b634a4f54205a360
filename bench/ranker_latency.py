"""In-process latency of the ranker's scoring for one shopper on a 100k-item catalog.

A synthetic shop (``demo.generate``) with 100,000 items; the ranker over ALS with 200
candidates per source (ALS, trending, bought together) is fitted once, then a shopper's full
scoring (``score_history``: every source, the merge, the features, the booster) is timed for
known shoppers' histories, one at a time, and so is ``recommend`` for known shoppers (what a
/recommend for a shopper without new events runs). This is the model's part of an answer,
without HTTP; bench/ranker_serving.py measures it through the server.

The CPU time of each stage of ``recommend`` is reported too (process time, which a busy shared
machine stretches less than wall time): the ALS retriever's scores over the catalog, the
bought-together scores, the merge of the three sources' top N, the features, the booster, and
the final top k over the catalog. The booster is also timed on the same feature rows with
LightGBM's default threads, against the one thread the model asks for.

    python bench/ranker_latency.py [--users 20000 --events 400000 --requests 300]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from _common import console, percentiles_ms, table, warn_if_busy, write_results
from recsys_lite.data import demo
from recsys_lite.models import create_model
from recsys_lite.models.base import _blocked, _finite_top
from recsys_lite.models.ranker import RankerModel
from recsys_lite.ranking.candidates import merge


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
    assert isinstance(model, RankerModel)
    console.print(f"fitted in {fit_seconds:.1f} s; serving: {model.validation['served']}")
    rng = np.random.default_rng(0)
    users = rng.choice(len(model.user_map), args.requests, replace=True)
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
    booster = booster_threads(model)
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
        ["als_scores", "bought_together", "merge", "features", "booster", "top_k"], 0.0
    )

    @contextmanager
    def timed(name: str) -> Iterator[None]:
        started = time.process_time()
        yield
        spent[name] += time.process_time() - started

    rows = 0
    recent = model.params.recent_items
    for user in users.tolist():
        history, seen = model.history(user), model.seen_items(user)
        with timed("als_scores"):
            als = stage.retrievers[0].score_users(np.array([user]))[0]
        with timed("bought_together"):
            together = stage.covisit.scores(history.items[-recent:])
        scores = [als, stage.trending, together]
        with timed("merge"):
            merge(scores, model.params.candidates, seen)
        with timed("features"):  # merges again: the merge's time is taken off below
            found, features = model._features(stage, scores, history, seen)
        with timed("booster"):
            predicted = model._predict(features)
        with timed("top_k"):  # as _rank and recommend finish: the k best over the catalog
            out = np.full(len(model.item_map), -np.inf, dtype=np.float32)
            out[found.items] = predicted
            out[seen] = predicted.min() - 1.0
            _finite_top(_blocked(out, seen, None), 10)
        rows += len(found.items)
    spent["features"] -= spent["merge"]
    per_request = {k: round(v * 1000 / len(users), 3) for k, v in spent.items()}
    per_request["total"] = round(sum(per_request.values()), 3)
    return per_request, round(rows / len(users), 1)


def booster_threads(model: RankerModel) -> dict[str, Any]:
    """The booster on one request's feature rows: one thread (as served) against LightGBM's
    default (every core), which on a few hundred rows pays more to coordinate than it saves."""
    history = model.history(0)
    features = model._features(
        model.stage,
        [s[0] for s in model._source_scores(model.stage, None, [history])],
        history,
        np.unique(history.items),
    )[1]
    booster = model._booster_cache
    out: dict[str, Any] = {"rows": len(features)}
    for label, kwargs in (("num_threads_1", {"num_threads": 1}), ("default_threads", {})):
        booster.predict(features, **kwargs)
        started = time.process_time()
        for _ in range(100):
            booster.predict(features, **kwargs)
        out[label] = round((time.process_time() - started) * 10, 3)
    out["compiled"] = compiled_booster(model, features)
    return out


def compiled_booster(model: RankerModel, features: np.ndarray) -> dict[str, Any] | None:
    """The same trees compiled to machine code by lleaves, when it is importable (it is not a
    dependency of the project): its time on the same rows and how far its scores differ."""
    try:
        import lleaves  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as folder:
        text = Path(folder) / "booster.txt"
        text.write_text(model.booster_text)
        compiled = lleaves.Model(model_file=str(text))
        started = time.perf_counter()
        compiled.compile(cache=str(Path(folder) / "booster.o"))
        compile_seconds = time.perf_counter() - started
    rows = np.asarray(features, dtype=np.float64)
    ours = np.asarray(model._booster_cache.predict(features, num_threads=1), np.float64)
    theirs = np.asarray(compiled.predict(rows, n_jobs=1), np.float64)
    started = time.process_time()
    for _ in range(100):
        compiled.predict(rows, n_jobs=1)
    return {
        "lleaves": metadata.version("lleaves"),
        "llvmlite": metadata.version("llvmlite"),
        "compile_seconds": round(compile_seconds, 1),
        "predict_cpu_ms": round((time.process_time() - started) * 10, 3),
        "max_abs_difference": float(np.abs(ours - theirs).max()),
        # the model serves float32 scores: what it would rank by
        "same_float32_scores": bool(
            np.array_equal(ours.astype(np.float32), theirs.astype(np.float32))
        ),
    }


if __name__ == "__main__":
    main()
