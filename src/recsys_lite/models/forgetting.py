"""Removing shoppers from a trained model: their rows, ids and histories, and what their
events added to what the model learned.

The part every model shares is exact: the user's row of the training interactions, their
stored history and their id go, and the item popularity they contributed (distinct users per
item) is subtracted. Each model then removes its own per-user arrays and, where it can, what
the user's events taught it (``Recommender._forget_users``); whatever a model cannot undo
exactly is undone by the full retrain without the user that erasure schedules.
"""

from __future__ import annotations

import numpy as np

from recsys_lite.data.idmap import IdMap
from recsys_lite.models.base import Recommender


def forget_users(model: Recommender, users: np.ndarray) -> None:
    """Remove the users (internal indices) from ``model`` in place."""
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
    model.history_items = model.history_items[kept_entries]
    model.history_weights = model.history_weights[kept_entries]
    model.history_ts = model.history_ts[kept_entries]
    model.history_indptr = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    model.user_map = IdMap(model.user_map.ids[keep])
    model._forget_users(keep, removed)
    model._unit_cache = None
