"""Removing shoppers from a trained model: their rows, ids and histories, and what their
events added to what the model learned.

The part every model shares is exact: the user's row of the training interactions, their
stored history and their id go, and the item popularity they contributed (distinct users per
item) is subtracted. Each model then removes its own per-user arrays and, where it can, what
the user's events taught it (``Recommender._forget_users``): popularity counts by subtraction,
EASE by a low-rank downdate of its inverse Gram matrix (both exact), ALS and BPR by refitting
the item side warm from the current factors. Whatever a model cannot undo exactly is undone by
the full retrain without the user that the worker runs within ``ERASURE_RETRAIN_HOURS``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_lite.data.idmap import IdMap
from recsys_lite.models.base import Recommender
from recsys_lite.models.types import ForgottenEvents, History


def forget_users(model: Recommender, users: np.ndarray, *, relearn: bool = False) -> None:
    """Remove the users (internal indices) from ``model`` in place.

    Dropping their rows, ids and histories and subtracting counts is quick and enough to make
    them unknown, which is what an API process needs at once. ``relearn`` also undoes what they
    taught the item side where that costs a solve (ALS, BPR, EASE: about a second at 1M events
    or 20k items); the erasure does it for the model it publishes, which then replaces every
    process's copy.
    """
    users = np.unique(np.asarray(users, dtype=np.int64))
    if not len(users):
        return
    keep = np.ones(len(model.user_map), dtype=bool)
    keep[users] = False
    removed = model.user_items[users]
    contributed = np.asarray((removed > 0).sum(axis=0), dtype=np.float32).ravel()
    model.item_popularity = np.maximum(model.item_popularity - contributed, 0.0)
    model.user_items = model.user_items[keep]
    lengths = np.diff(model.history_indptr)
    kept_entries = np.repeat(keep, lengths)
    removed_history = History(
        model.history_items[~kept_entries],
        model.history_weights[~kept_entries],
        model.history_ts[~kept_entries],
    )
    owners = np.repeat(np.arange(len(users)), lengths[users])
    newest = int(model.history_ts.max()) if len(model.history_ts) else 0
    model.history_items = model.history_items[kept_entries]
    model.history_weights = model.history_weights[kept_entries]
    model.history_ts = model.history_ts[kept_entries]
    model.history_indptr = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    model.user_map = IdMap(model.user_map.ids[keep])
    model._forget_users(keep, removed, ForgottenEvents(removed_history, owners, newest, relearn))
    model._unit_cache = None


_DOWNDATE_BLOCK = 2048  # rows of P updated at a time, so no second n x n array is made


def inverse_downdate(inverse: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
    """(G - R'R)^-1 from P = G^-1 (symmetric), for a few sparse rows R (Woodbury); in place.

    P' = P + P R' (I - R P R')^-1 R P. Only the columns of P that R touches are read, so the
    cost is one n x n rank-r update, O(n^2 r), instead of the O(n^3) of inverting again. The
    small factors are formed in float64; P itself stays in its own dtype.
    """
    rows = sp.csr_matrix(rows, dtype=np.float64)
    touched = np.unique(rows.indices)
    compact = rows[:, touched].toarray()  # r x t
    left = np.asarray(inverse[:, touched], dtype=np.float64) @ compact.T  # P R', n x r
    capacitance = np.eye(rows.shape[0]) - compact @ left[touched]  # I - R P R'
    right = np.linalg.solve(capacitance, left.T)  # r x n
    for start in range(0, len(inverse), _DOWNDATE_BLOCK):
        stop = start + _DOWNDATE_BLOCK
        inverse[start:stop] += (left[start:stop] @ right).astype(inverse.dtype)
    return inverse
