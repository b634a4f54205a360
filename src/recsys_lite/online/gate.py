"""The worker's not-worse test: the served model and a candidate scored on one holdout.

Both models answer for the same users and are judged against the same targets, with the same
items excluded: what each user had before the holdout (the served model learns of the newer
part of that history online, so it would exclude it when serving too). Scoring each model with
its own training data as the reference instead gave the served model the items bought again
soon after its cutoff as easy targets, and the candidate, trained on them, never won.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recsys_lite.evaluation.metrics import ranking_metrics
from recsys_lite.models.base import Recommender
from recsys_lite.models.retrieval import top_k

GATE_KS = (10, 20)
SCORE_BUDGET = 20_000_000  # floats per scoring batch (80 MB)
NOISE_Z = 2.0  # standard errors of the per-user difference forgiven (one-sided, about 98%)


@dataclass(frozen=True)
class Holdout:
    users: list[str]  # known to every model judged, so each answers from what it learned
    targets: pa.Table  # (user_id, item_id): what each user had in the holdout and not before
    excluded: pa.Table  # (user_id, item_id): what each user had before the holdout
    n_relevant: np.ndarray  # targets per user, in the order of ``users``


def build_holdout(before: pa.Table, holdout: pa.Table, models: list[Recommender]) -> Holdout:
    users = sorted(
        set(holdout.column("user_id").unique().to_pylist()).intersection(
            *[set(model.user_map.ids.tolist()) for model in models]
        )
    )
    con = duckdb.connect()
    try:
        con.register("judged", pa.table({"user_id": pa.array(users, pa.string())}))
        con.register("before_events", before.select(["user_id", "item_id"]))
        con.register("holdout_events", holdout.select(["user_id", "item_id"]))
        excluded = con.sql(
            "SELECT DISTINCT user_id, item_id FROM before_events SEMI JOIN judged USING (user_id)"
        ).to_arrow_table()
        con.register("excluded", excluded)
        targets = con.sql(
            "SELECT DISTINCT user_id, item_id FROM holdout_events SEMI JOIN judged USING (user_id)"
            " ANTI JOIN excluded USING (user_id, item_id) ORDER BY user_id, item_id"
        ).to_arrow_table()
    finally:
        con.close()
    row_of = {user: n for n, user in enumerate(users)}
    rows = np.array([row_of[u] for u in targets.column("user_id").to_pylist()], dtype=np.int64)
    n_relevant = np.bincount(rows, minlength=len(users))
    keep = n_relevant > 0  # users who only repeated what they had leave nothing to find
    kept = [user for user, has in zip(users, keep.tolist(), strict=True) if has]
    return Holdout(kept, targets, excluded, n_relevant[keep])


def score_on_holdout(
    model: Recommender, holdout: Holdout, ks: tuple[int, ...] = GATE_KS
) -> dict[str, np.ndarray]:
    """Ranking metrics of the model's top items for each holdout user, in the order of
    ``holdout.users`` (ids of items the model does not know count as targets it cannot find)."""
    n_users, n_items = len(holdout.users), len(model.item_map)
    row_of = {user: n for n, user in enumerate(holdout.users)}
    targets = _pairs(holdout.targets, row_of, model, n_users)
    excluded = _pairs(holdout.excluded, row_of, model, n_users)
    model_rows = model.user_map.to_index(pa.array(holdout.users, pa.string()))
    max_k = max(ks)
    hits = np.zeros((n_users, max_k), dtype=bool)
    batch = max(1, min(4096, SCORE_BUDGET // max(n_items, 1)))
    for start in range(0, n_users, batch):
        stop = min(start + batch, n_users)
        scores = model.score_users(model_rows[start:stop])
        seen_rows, seen_items = excluded[start:stop].nonzero()
        scores[seen_rows, seen_items] = -np.inf
        best = top_k(scores, max_k)
        finite = np.isfinite(np.take_along_axis(scores, best, axis=1))
        found = np.take_along_axis(targets[start:stop].toarray(), best, axis=1) & finite
        hits[start:stop, : best.shape[1]] = found
    metrics: dict[str, np.ndarray] = {}
    for k in ks:
        for name, values in ranking_metrics(hits, holdout.n_relevant, k).items():
            metrics[f"{name}@{k}"] = values
    return metrics


def means(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(values.mean()) if len(values) else 0.0 for name, values in metrics.items()}


def not_worse(
    served: np.ndarray, candidate: np.ndarray, *, tolerance: float = 0.0, noise_z: float = NOISE_Z
) -> bool:
    """Whether the candidate's per-user metric is not worse than the served model's.

    The two were measured on the same users, so the test is on their per-user differences: the
    candidate passes unless its mean falls short by more than ``tolerance`` (a share of the
    served mean) plus ``noise_z`` standard errors. With a few hundred users, two models of
    equal quality differ by a few percent from one holdout to the next: without the noise
    term a retrained model of the same quality was refused about half the time.
    """
    if len(served) == 0:
        return False
    difference = candidate - served
    noise = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return bool(difference.mean() + 1e-12 >= -tolerance * served.mean() - noise_z * noise)


def _pairs(
    pairs: pa.Table, row_of: dict[str, int], model: Recommender, n_users: int
) -> sp.csr_matrix:
    """(holdout user row, model item index) of the pairs whose user is judged and whose item
    the model knows."""
    users = np.array([row_of.get(u, -1) for u in pairs.column("user_id").to_pylist()], np.int64)
    items = model.item_map.to_index(pairs.column("item_id"), strict=False)
    keep = (users >= 0) & (items >= 0)
    return sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=bool), (users[keep], items[keep])),
        shape=(n_users, len(model.item_map)),
    )
