"""Ranking metrics over a hit matrix, vectorised over users.

``hits[u, r]`` is True when the item at rank ``r`` (0-based) of user ``u``'s list is relevant;
``n_relevant[u]`` counts all of the user's relevant items, including ones the model cannot rank
(new items), so they count as misses instead of vanishing.
"""

from __future__ import annotations

import numpy as np

from recsys_lite.errors import InvalidInputError

METRIC_NAMES = ("hr", "ndcg", "recall", "map")  # per-user ranking metrics
# every metric an evaluation reports at a cutoff k (coverage is of the catalog, not per user)
REPORTED_METRICS = (*METRIC_NAMES, "coverage")


def parse_metric(metric: str) -> tuple[str, int]:
    """``ndcg@20`` → ("ndcg", 20); the error lists what exists."""
    name, _, k = metric.lower().partition("@")
    if name not in REPORTED_METRICS or not k.isdigit() or int(k) < 1:
        raise InvalidInputError(
            f"metric must look like ndcg@20 (one of {', '.join(REPORTED_METRICS)} at some k),"
            f" got {metric!r}"
        )
    return name, int(k)


METRIC_HELP = f"{', '.join(REPORTED_METRICS)} at a cutoff, e.g. ndcg@20"


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def hit_rate(hits: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].sum(axis=1) / np.maximum(n_relevant, 1), dtype=np.float64)


def ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    discounts = _discounts(k)
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cumulative[np.minimum(n_relevant, k)]
    return np.asarray(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0))


def average_precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    top = hits[:, :k].astype(np.float64)
    precision_at = np.cumsum(top, axis=1) / np.arange(1, top.shape[1] + 1)
    return np.asarray((precision_at * top).sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1))


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-user HR, NDCG, Recall and MAP at k."""
    return {
        "hr": hit_rate(hits, k),
        "ndcg": ndcg(hits, n_relevant, k),
        "recall": recall(hits, n_relevant, k),
        "map": average_precision(hits, n_relevant, k),
    }


def coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalog that appears in at least one user's top k."""
    if n_items == 0 or recommended.size == 0:
        return 0.0
    top = recommended[:, :k]
    return float(len(np.unique(top[top >= 0])) / n_items)
