"""Why an item was recommended: the user's own past items that contributed most to its score.

Each model's own decomposition where it has one, so the percentages are what the model
computed, not a story told afterwards:

* ALS: the decomposition implicit's ``explain`` computes (Hu, Koren & Volinsky 2008,
  section 5): the score is exactly ``sum_j c_uj * y_i' W_u y_j`` over the user's items j, with
  ``W_u`` the user's weighted inverse;
* EASE: the score is ``sum_j x_uj * B[j, i]``, so item j contributes its row of the weights;
* any other model (item2vec, BPR, LightFM, GRU4Rec, two-tower): cosine similarity of item
  vectors (its own, or category and brand for models without them) times the item's weight
  in the history.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from recsys_lite.models.base import Recommender
from recsys_lite.models.types import History

MAX_EXPLAIN_TOP_K = 10


class Contribution(NamedTuple):
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


# per served model: B = Y'Y + lambda I (a pass over every item, far too much per request) and
# its inverse
_BASE: weakref.WeakKeyDictionary[Recommender, tuple[np.ndarray, np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def _base(model: Any) -> tuple[np.ndarray, np.ndarray]:
    factors = model.item_factors
    held = _BASE.get(model)
    if held is None or held[0] is not factors:
        base = factors.T.astype(np.float64) @ factors
        base += model.params.regularization * np.eye(factors.shape[1])
        held = (factors, base, np.linalg.inv(base))
        _BASE[model] = held
    return held[1], held[2]


def als_contributions(model: Any, user: UserItems, targets: np.ndarray) -> np.ndarray:
    """implicit's ``AlternatingLeastSquares.explain`` for every target at once: with
    confidences c = alpha * weight and W = (B + Y_u' D Y_u)^-1, B = Y'Y + lambda I and
    D = diag(c - 1) (the user's own least-squares system), past item j adds ``c_j * y_j' W y_i``
    to the score of item i. implicit loops over the history in Python per item, milliseconds
    per answer; this is the same arithmetic in a few small products (a test checks it against
    implicit's)."""
    factors = model.item_factors
    confidence = model.params.alpha * user.weights.astype(np.float64)
    observed = factors[user.items].astype(np.float64)
    wanted = factors[targets].T.astype(np.float64)
    base, inverse = _base(model)
    d = (confidence - 1.0)[:, None]
    if len(observed) < len(base):
        # Woodbury: Y_u W = (I + K D)^-1 Y_u B^-1 with K = Y_u B^-1 Y_u', a system the size of
        # the history instead of the factors
        projected = observed @ inverse
        k = projected @ observed.T
        m = projected @ wanted
        system = d * k
        system.flat[:: len(observed) + 1] += 1.0  # I + D K, without building I per request
        weighted = m - k @ np.linalg.solve(system, d * m)
    else:
        weighted = observed @ np.linalg.solve(base + (observed.T * d.T) @ observed, wanted)
    contributions: np.ndarray = weighted.T * confidence
    return contributions


SimilarityOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Reasons(NamedTuple):
    """Every target's top past items as arrays, one row per target: what ``explain`` returns
    as Python objects, for callers that encode it straight to JSON."""

    items: np.ndarray  # internal indices of the user's past items
    similarity: np.ndarray  # rounded to 4 decimals
    contribution_pct: np.ndarray  # rounded to 1 decimal
    kept: np.ndarray  # False where the contribution is not positive (not shown)


def reasons(
    model: Recommender,
    user: UserItems,
    targets: np.ndarray,
    top_k: int,
    similarity_of: SimilarityOf,
) -> Reasons:
    """``explain``'s answer as arrays (see there)."""
    if not len(user.items) or not len(targets):
        empty = np.zeros((len(targets), 0))
        return Reasons(empty.astype(np.int64), empty, empty, empty.astype(bool))
    similarity = similarity_of(targets, user.items)
    name = model.name
    if name == "als":
        contributions = als_contributions(model, user, targets)
    elif name == "ease":
        x = np.ones_like(user.weights) if model.params.binary else user.weights  # type: ignore[attr-defined]
        weights = np.asarray(model.weights)[np.ix_(user.items, targets)].T  # type: ignore[attr-defined]
        contributions = weights * x
        similarity = weights
    else:
        contributions = np.maximum(similarity, 0.0) * user.weights
    # in float64: a float32 rounded to 4 decimals reads back as 0.8553000092506409 in JSON
    positive = np.maximum(contributions, 0.0).astype(np.float64)
    totals = positive.sum(axis=1, keepdims=True)
    # one sort and one rounding for the whole answer: per-item Python here cost more than the
    # model's arithmetic
    order = np.argsort(-positive, axis=1, kind="stable")[:, :top_k]
    rows = np.arange(len(targets))[:, None]
    top = positive[rows, order]
    shares = np.round(100.0 * top / np.where(totals > 0, totals, 1.0), 1)
    similar = np.round(similarity[rows, order].astype(np.float64), 4)
    return Reasons(user.items[order], similar, shares, top > 0)


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
    found = reasons(model, user, targets, top_k, similarity_of)
    return [
        [
            Contribution(item, similar_, share_)
            for item, similar_, share_, keep in zip(p, sims, pcts, keeps, strict=True)
            if keep
        ]
        for p, sims, pcts, keeps in zip(
            found.items.tolist(),
            found.similarity.tolist(),
            found.contribution_pct.tolist(),
            found.kept.tolist(),
            strict=True,
        )
    ]
