"""Full-ranking offline evaluation of a fitted model on a holdout of events.

Every item of the catalog is ranked for every test user (no sampled negatives); the items the
user interacted with in training are removed from both the ranking and the targets. Test users
the model never saw cannot be personalised: they are scored separately, on the popular fallback
they would get when served. Test items the model does not know count as relevant and can never
be hit; the splits (split.py) drop the items their training part never mentions before this, so
a holdout scores a model only on items it could have learned.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from rich.progress import Progress

from recsys_lite.evaluation.metrics import coverage, ranking_metrics
from recsys_lite.models.base import Recommender
from recsys_lite.models.retrieval import NEG_INF, top_k

DEFAULT_KS = (10, 20)
SCORE_BUDGET = 20_000_000  # floats per scoring batch (80 MB)


def _summaries(hits: np.ndarray, n_relevant: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in ks:
        for name, values in ranking_metrics(hits, n_relevant, k).items():
            out[f"{name}@{k}"] = float(values.mean()) if len(values) else 0.0
    return out


def evaluate_model(
    model: Recommender,
    test: pa.Table,
    *,
    ks: tuple[int, ...] = DEFAULT_KS,
    show_progress: bool = False,
    threads: int = 1,
) -> dict[str, Any]:
    """Rank every item for every test user the model knows; ``threads`` batches at a time."""
    started = time.perf_counter()
    max_k = max(ks)
    n_items = len(model.item_map)
    users = model.user_map.to_index(test.column("user_id"), strict=False)
    items = model.item_map.to_index(test.column("item_id"), strict=False)

    # Targets: distinct (user, item) pairs; items new to the model keep a per-id code < 0 so
    # they are counted as relevant yet can never be hit.
    test_item_ids = test.column("item_id").to_numpy(zero_copy_only=False)
    _, new_codes = np.unique(test_item_ids, return_inverse=True)
    item_codes = np.where(items >= 0, items, -1 - new_codes)

    known = users >= 0
    pairs = np.unique(np.stack([users[known], item_codes[known]], axis=1), axis=0)
    if len(pairs):
        in_catalog = pairs[:, 1] >= 0
        seen = np.zeros(len(pairs), dtype=bool)
        seen[in_catalog] = (
            np.asarray(model.user_items[pairs[in_catalog, 0], pairs[in_catalog, 1]]).ravel() != 0
        )
        pairs = pairs[~seen]
    eval_users, n_relevant = (
        np.unique(pairs[:, 0], return_counts=True)
        if len(pairs)
        else (
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
        )
    )
    row_of_user = np.full(len(model.user_map), -1, dtype=np.int64)
    row_of_user[eval_users] = np.arange(len(eval_users))
    reachable = pairs[pairs[:, 1] >= 0] if len(pairs) else pairs.reshape(0, 2)
    targets = sp.csr_matrix(
        (np.ones(len(reachable), dtype=bool), (row_of_user[reachable[:, 0]], reachable[:, 1])),
        shape=(len(eval_users), n_items),
    )

    hits = np.zeros((len(eval_users), max_k), dtype=bool)
    recommended = np.full((len(eval_users), max_k), -1, dtype=np.int64)
    batch = max(1, min(4096, SCORE_BUDGET // max(n_items, 1)))

    def rank(start: int) -> int:
        """Rank one batch of users into its own rows of hits and recommended."""
        batch_users = eval_users[start : start + batch]
        scores = model.score_users(batch_users)
        seen_rows, seen_cols = model.user_items[batch_users].nonzero()
        scores[seen_rows, seen_cols] = NEG_INF
        best = top_k(scores, max_k)
        best[~np.isfinite(np.take_along_axis(scores, best, axis=1))] = -1
        width = best.shape[1]
        recommended[start : start + len(batch_users), :width] = best
        dense_targets = targets[start : start + len(batch_users)].toarray()
        found = np.take_along_axis(dense_targets, np.maximum(best, 0), axis=1) & (best >= 0)
        hits[start : start + len(batch_users), :width] = found
        return len(batch_users)

    # Scoring (BLAS) and picking each row's top k (argpartition) release the GIL, so batches
    # on several threads use several cores: at 1M users the evaluation is most of a
    # training run with a holdout (bench/scale.py).
    with (
        Progress(disable=not show_progress, transient=True) as progress,
        ThreadPoolExecutor(max_workers=max(1, threads)) as pool,
    ):
        task = progress.add_task(f"evaluating {model.name}", total=len(eval_users))
        for done in pool.map(rank, range(0, len(eval_users), batch)):
            progress.advance(task, done)

    result: dict[str, Any] = {
        "model": model.name,
        "users_evaluated": len(eval_users),
        "test_events": test.num_rows,
        "n_items": n_items,
        "metrics": _summaries(hits, n_relevant, ks),
    }
    for k in ks:
        result["metrics"][f"coverage@{k}"] = coverage(recommended, n_items, k)
    cold = users < 0
    result["cold_start"] = _evaluate_cold_users(
        model, test.column("user_id").to_numpy(zero_copy_only=False)[cold], item_codes[cold], ks
    )
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _evaluate_cold_users(
    model: Recommender, user_ids: np.ndarray, item_codes: np.ndarray, ks: tuple[int, ...]
) -> dict[str, Any]:
    """Users absent from training get the popular fallback; report them on their own."""
    if len(user_ids) == 0:
        return {"users": 0, "metrics": {}}
    _, cold_users = np.unique(user_ids, return_inverse=True)
    pairs = np.unique(np.stack([cold_users, item_codes], axis=1), axis=0)
    users, n_relevant = np.unique(pairs[:, 0], return_counts=True)
    max_k = max(ks)
    fallback = model.popular(max_k).items
    rank_of_item = np.full(len(model.item_map), -1, dtype=np.int64)
    rank_of_item[fallback] = np.arange(len(fallback))
    in_catalog = pairs[:, 1] >= 0
    ranks = np.full(len(pairs), -1, dtype=np.int64)
    ranks[in_catalog] = rank_of_item[pairs[in_catalog, 1]]
    hits = np.zeros((len(users), max_k), dtype=bool)
    hit = ranks >= 0
    hits[pairs[hit, 0], ranks[hit]] = True
    return {"users": len(users), "metrics": _summaries(hits, n_relevant, ks)}
