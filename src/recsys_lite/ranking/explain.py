"""Why an item was recommended: the user's own past items that contributed most to its score.

Each model's own decomposition where it has one, so the percentages are what the model
computed, not a story told afterwards:

* ALS: implicit's ``explain`` (Hu, Koren & Volinsky 2008, section 5): the score is exactly
  ``sum_j c_uj * y_i' W_u y_j`` over the user's items j, with ``W_u`` the user's weighted
  inverse;
* EASE: the score is ``sum_j x_uj * B[j, i]``, so item j contributes its row of the weights;
* any other model (item2vec, BPR, LightFM, GRU4Rec, two-tower): cosine similarity of item
  vectors (its own, or category and brand for models without them) times the item's weight
  in the history.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from recsys_lite.models.base import History, Recommender

MAX_EXPLAIN_TOP_K = 10


@dataclass(frozen=True)
class Contribution:
    item: int  # internal index of the user's past item
    similarity: float
    contribution_pct: float


@dataclass(frozen=True)
class UserItems:
    """What the user's score was computed from: distinct items and their summed weights."""

    items: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_history(cls, history: History) -> UserItems:
        items, inverse = np.unique(history.items, return_inverse=True)
        weights = np.bincount(inverse, weights=history.weights).astype(np.float32)
        keep = weights > 0
        return cls(items[keep], weights[keep])

    @classmethod
    def from_model(cls, model: Recommender, user: int) -> UserItems:
        start, end = model.user_items.indptr[user], model.user_items.indptr[user + 1]
        return cls(
            np.asarray(model.user_items.indices[start:end]),
            np.asarray(model.user_items.data[start:end], dtype=np.float32),
        )


# per served model: the pieces of implicit's ALS that depend only on the item factors (its
# Gram matrix costs a pass over every item, far too much per request)
_ALS: weakref.WeakKeyDictionary[Recommender, tuple[np.ndarray, Any]] = weakref.WeakKeyDictionary()


def _implicit_als(model: Any) -> Any:
    factors = model.item_factors
    held = _ALS.get(model)
    if held is None or held[0] is not factors:
        from implicit.cpu.als import AlternatingLeastSquares

        p = model.params
        als = AlternatingLeastSquares(
            factors=factors.shape[1], regularization=p.regularization, alpha=p.alpha,
            num_threads=1,
        )  # fmt: skip
        als.item_factors = factors
        held = (factors, (als, factors.T.astype(np.float64) @ factors))
        _ALS[model] = held
    return held[1]


def _als_contributions(model: Any, user: UserItems, targets: np.ndarray) -> np.ndarray:
    import scipy.sparse as sp

    als, gram = _implicit_als(model)
    row = sp.csr_matrix(
        (user.weights, user.items, [0, len(user.items)]), shape=(1, len(model.item_map))
    )
    # implicit's own linear system, with the Gram matrix held rather than recomputed
    confidence = als.alpha * user.weights.astype(np.float64)
    observed = model.item_factors[user.items].astype(np.float64)
    a = gram + als.regularization * np.eye(gram.shape[0])
    a += (observed.T * (confidence - 1.0)) @ observed
    weights = scipy.linalg.cho_factor(a)
    out = np.zeros((len(targets), len(user.items)))
    position = {item: n for n, item in enumerate(user.items.tolist())}
    for t, target in enumerate(targets.tolist()):
        _, contributions, _ = als.explain(0, row, target, user_weights=weights, N=len(user.items))
        for item, value in contributions:
            out[t, position[item]] = value
    return out


SimilarityOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def explain(
    model: Recommender,
    user: UserItems,
    targets: np.ndarray,
    top_k: int,
    similarity_of: SimilarityOf,
) -> list[list[Contribution]]:
    """For each target item, the user's top_k past items by contribution, with each one's
    share of the positive contributions (percent) and its similarity to the target.

    ``similarity_of(targets, items)`` is the cosine matrix of item vectors (the model's, or
    catalog features' for models without their own).
    """
    if not len(user.items) or not len(targets):
        return [[] for _ in targets]
    similarity = similarity_of(targets, user.items)
    name = model.name
    if name == "als":
        contributions = _als_contributions(model, user, targets)
    elif name == "ease":
        x = np.ones_like(user.weights) if model.params.binary else user.weights  # type: ignore[attr-defined]
        weights = np.asarray(model.weights)[np.ix_(user.items, targets)].T  # type: ignore[attr-defined]
        contributions = weights * x
        similarity = weights
    else:
        contributions = np.maximum(similarity, 0.0) * user.weights
    positive = np.maximum(contributions, 0.0)
    totals = positive.sum(axis=1)
    result: list[list[Contribution]] = []
    for t in range(len(targets)):
        if totals[t] <= 0:
            result.append([])
            continue
        order = np.argsort(-positive[t], kind="stable")[:top_k]
        result.append(
            [
                Contribution(
                    int(user.items[j]),
                    round(float(similarity[t, j]), 4),
                    round(100.0 * float(positive[t, j]) / float(totals[t]), 1),
                )
                for j in order.tolist()
                if positive[t, j] > 0
            ]
        )
    return result
