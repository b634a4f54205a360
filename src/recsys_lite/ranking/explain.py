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

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import orjson

from recsys_lite.models.base import Recommender
from recsys_lite.models.types import History

kernel: ModuleType | None
try:
    from recsys_lite.ranking import _reasons as kernel
except ImportError:  # installed without a C compiler: the numpy versions below answer
    kernel = None

MAX_EXPLAIN_TOP_K = 10
BECAUSE = b'%b,"similarity":%b,"contribution_pct":%b}'
PROJECTION_BLOCK = 65_536


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


class _Solved(NamedTuple):
    factors: np.ndarray  # the item factors these were computed from
    base: np.ndarray  # B = Y'Y + lambda I
    projected: np.ndarray  # Y B^-1, float32: every item's row of the Woodbury form


# per served model: a pass over every item, far too much per request
_SOLVED: weakref.WeakKeyDictionary[Recommender, _Solved] = weakref.WeakKeyDictionary()


def _solved(model: Any) -> _Solved:
    factors = model.item_factors
    held = _SOLVED.get(model)
    if held is None or held.factors is not factors:
        base = factors.T.astype(np.float64) @ factors
        base += model.params.regularization * np.eye(factors.shape[1])
        inverse = np.linalg.inv(base)
        # in float64, a block at a time (a float32 product loses digits where B is ill
        # conditioned; one float64 copy of a large catalog's factors would double its memory)
        projected = np.empty(factors.shape, dtype=np.float32)
        for start in range(0, len(factors), PROJECTION_BLOCK):
            block = factors[start : start + PROJECTION_BLOCK].astype(np.float64)
            projected[start : start + PROJECTION_BLOCK] = block @ inverse
        held = _Solved(factors, base, projected)
        _SOLVED[model] = held
    return held


def als_contributions(
    model: Any, user: UserItems, targets: np.ndarray, *, use_kernel: bool = True
) -> np.ndarray:
    """implicit's ``AlternatingLeastSquares.explain`` for every target at once: with
    confidences c = alpha * weight and W = (B + Y_u' D Y_u)^-1, B = Y'Y + lambda I and
    D = diag(c - 1) (the user's own least-squares system), past item j adds ``c_j * y_j' W y_i``
    to the score of item i. implicit loops over the history in Python per item, milliseconds
    per answer; this is the same arithmetic in a few small products (a test checks it against
    implicit's), and in one call of the compiled kernel when it is built."""
    confidence = model.params.alpha * user.weights.astype(np.float64)
    solved = _solved(model)
    factors = solved.factors  # the ones ``projected`` was computed from (items may be added)
    weighted = None
    if len(user.items) < factors.shape[1]:
        # Woodbury: Y_u W = (I + K D)^-1 Y_u B^-1 with K = Y_u B^-1 Y_u', a system the size of
        # the history instead of the factors
        if use_kernel and kernel is not None and factors.dtype == np.float32:
            written = np.empty((len(targets), len(user.items)))
            try:
                kernel.woodbury_contributions(
                    solved.projected, np.ascontiguousarray(factors),
                    user.items.astype(np.int64), confidence, targets.astype(np.int64), written,
                )  # fmt: skip
                return written
            except ArithmeticError:  # I + D K singular: the factors' own system below is not
                pass
        else:
            projected = solved.projected[user.items].astype(np.float64)
            k = projected @ factors[user.items].T.astype(np.float64)
            m = projected @ factors[targets].T.astype(np.float64)
            d = (confidence - 1.0)[:, None]
            system = d * k
            system.flat[:: len(user.items) + 1] += 1.0  # I + D K, without building I per call
            with contextlib.suppress(np.linalg.LinAlgError):  # singular: see below
                weighted = m - k @ np.linalg.solve(system, d * m)
    if weighted is None:
        # B + Y_u' D Y_u is Y'Y + lambda I with each of the user's items weighted by its
        # confidence instead of 1: positive definite for lambda > 0
        observed = factors[user.items].astype(np.float64)
        d_row = (confidence - 1.0)[None, :]
        weighted = observed @ np.linalg.solve(
            solved.base + (observed.T * d_row) @ observed, factors[targets].T.astype(np.float64)
        )
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


def _scored(
    model: Recommender,
    user: UserItems,
    targets: np.ndarray,
    similarity_of: SimilarityOf,
    use_kernel: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(contributions, similarity): one row per target, one column per past item."""
    similarity = similarity_of(targets, user.items)
    name = model.name
    if name == "als":
        contributions = als_contributions(model, user, targets, use_kernel=use_kernel)
    elif name == "ease":
        x = np.ones_like(user.weights) if model.params.binary else user.weights  # type: ignore[attr-defined]
        weights = np.asarray(model.weights)[np.ix_(user.items, targets)].T  # type: ignore[attr-defined]
        contributions = weights * x
        similarity = weights
    else:
        contributions = np.maximum(similarity, 0.0) * user.weights
    return contributions, similarity


def reasons(
    model: Recommender,
    user: UserItems,
    targets: np.ndarray,
    top_k: int,
    similarity_of: SimilarityOf,
    *,
    use_kernel: bool = True,
) -> Reasons:
    """``explain``'s answer as arrays (see there)."""
    if not len(user.items) or not len(targets):
        empty = np.zeros((len(targets), 0))
        return Reasons(empty.astype(np.int64), empty, empty, empty.astype(bool))
    contributions, similarity = _scored(model, user, targets, similarity_of, use_kernel)
    return top_reasons(contributions, similarity, user.items, top_k)


def top_reasons(
    contributions: np.ndarray, similarity: np.ndarray, items: np.ndarray, top_k: int
) -> Reasons:
    """Each row's top_k columns by positive contribution (ties: the earlier column)."""
    # in float64: a float32 rounded to 4 decimals reads back as 0.8553000092506409 in JSON
    positive = np.maximum(contributions, 0.0).astype(np.float64)
    # summed left to right, as the compiled kernel does: a pairwise sum can differ in the last
    # bit and move a share rounded at x.x5
    totals = (
        np.cumsum(positive, axis=1)[:, -1:] if positive.shape[1] else np.zeros((len(positive), 1))
    )
    # one sort and one rounding for the whole answer: per-item Python here cost more than the
    # model's arithmetic
    order = np.argsort(-positive, axis=1, kind="stable")[:, :top_k]
    rows = np.arange(len(contributions))[:, None]
    top = positive[rows, order]
    shares = np.round(100.0 * top / np.where(totals > 0, totals, 1.0), 1)
    similar = np.round(similarity[rows, order].astype(np.float64), 4)
    return Reasons(items[order], similar, shares, top > 0)


def reason_fields(
    model: Recommender,
    user: UserItems,
    targets: np.ndarray,
    top_k: int,
    similarity_of: SimilarityOf,
    fragments: dict[int, bytes],
    fragment_of: Callable[[int], bytes],
    *,
    use_kernel: bool = True,
) -> list[bytes]:
    """``explain``'s answer as the API writes it: per target, the JSON bytes
    ``,"reason":"history","because":[...]`` to append to the item's object, each past item as
    its ``fragment_of(index)`` (an object without its closing brace; ``fragments`` is its
    cache) followed by its similarity and share."""
    if use_kernel and kernel is not None and len(user.items) and len(targets):
        contributions, similarity = _scored(model, user, targets, similarity_of, True)
        encoded: list[bytes] = kernel.because_fields(
            np.ascontiguousarray(contributions), np.ascontiguousarray(similarity),
            user.items.astype(np.int64), top_k, fragments, fragment_of,
        )  # fmt: skip
        return encoded
    found = reasons(model, user, targets, top_k, similarity_of, use_kernel=use_kernel)
    return encoded_reasons(found, fragment_of)


def encoded_reasons(found: Reasons, fragment_of: Callable[[int], bytes]) -> list[bytes]:
    """``found`` as ``reason_fields`` writes it (what the compiled kernel's ``because_fields``
    writes in one call)."""
    # the numbers encoded by one orjson call: a dict per reason and an encoding per answer
    # cost more than the model's arithmetic
    kept = found.kept.ravel()
    entries = [
        BECAUSE % (fragment_of(item), similarity, share)
        for item, similarity, share in zip(
            found.items.ravel()[kept].tolist(), _numbers(found.similarity.ravel()[kept]),
            _numbers(found.contribution_pct.ravel()[kept]), strict=True,
        )
    ]  # fmt: skip
    fields = []
    at = 0
    for count in found.kept.sum(axis=1).tolist():  # row by row, as ravel orders them
        fields.append(
            b',"reason":"history","because":[' + b",".join(entries[at : at + count]) + b"]"
        )
        at += count
    return fields


def _numbers(values: np.ndarray) -> list[bytes]:
    """Each float of ``values`` (row by row) as orjson writes it."""
    if not values.size:
        return []
    return orjson.dumps(values.ravel().tolist())[1:-1].split(b",")


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
