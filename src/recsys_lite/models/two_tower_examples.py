"""The two-tower model's training examples, and the histories its user tower pools: weighted
by recency, merged into bags per embedding table (numpy; serving pools the same way)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_lite.models.catalog_features import FEATURES, ItemFeatures
from recsys_lite.models.histories import recency_decay
from recsys_lite.models.types import TrainingData

POOLED = ("history_item", *FEATURES)  # the tables the user tower pools over a history

Bags = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def recency_weights(
    event_weights: np.ndarray, ages: np.ndarray, valid: np.ndarray, half_life: float
) -> np.ndarray:
    """Pooling weights of history events (the last axis is one history), summing to one.

    ``ages`` counts the newer events of the history (0 for the newest). A history whose events
    all weigh nothing pools to zero, like an empty one.
    """
    weights = np.where(valid, event_weights * recency_decay(ages, half_life), 0.0)
    totals = weights.sum(axis=-1, keepdims=True)
    return np.asarray(weights / np.where(totals > 0, totals, 1.0), dtype=np.float32)


def history_bags(
    owner: np.ndarray, items: np.ndarray, weights: np.ndarray, n_rows: int, features: ItemFeatures
) -> Bags:
    """What the user tower pools from each table: per row, codes, summed weights and offsets.

    ``owner`` gives the row of each (item, weight) history entry. A row's repeats of a code are
    merged: the pooled sum stays the same, but the bags get several times shorter (a history
    spans a few categories and prices), and their backward pass sorts every entry.
    """
    bags: Bags = {}
    for name in POOLED:
        codes = items if name == "history_item" else features.code(name)[items]
        shape = (n_rows, int(codes.max(initial=0)) + 1)
        merged = sp.csr_matrix((weights, (owner, codes)), shape=shape)
        bags[name] = (
            merged.indices.astype(np.int64),
            merged.data.astype(np.float32),
            merged.indptr[:-1].astype(np.int64),
        )
    return bags


class Examples:
    """Training examples: an event as the target, the user's events just before it as input."""

    def __init__(
        self, data: TrainingData, history_length: int, half_life: float, repeats: bool = True
    ) -> None:
        order = np.argsort(data.event_users, kind="stable")  # per user, still in time order
        self.users = data.event_users[order].astype(np.int64)
        self.items = data.event_items[order].astype(np.int64)
        self.weights = data.event_weights[order].astype(np.float64)
        counts = np.bincount(self.users)
        self.starts = np.repeat(np.cumsum(counts) - counts, counts)
        self.back = np.arange(history_length, 0, -1)  # oldest slot first, like History
        self.half_life = half_life
        self.targets = np.arange(len(self.items))
        if not repeats:  # only each user's first event with an item
            pairs = self.users * (int(self.items.max(initial=0)) + 1) + self.items
            self.targets = np.sort(np.unique(pairs, return_index=True)[1])

    def __len__(self) -> int:
        return len(self.targets)

    def histories(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """History entries of the examples ``rows``: batch row, item and pooling weight of each,
        row by row, oldest first."""
        positions = rows[:, None] - self.back[None, :]
        valid = positions >= self.starts[rows][:, None]
        positions = np.where(valid, positions, 0)
        weights = recency_weights(self.weights[positions], self.back - 1.0, valid, self.half_life)
        owner = np.broadcast_to(np.arange(len(rows))[:, None], valid.shape)
        return owner[valid], self.items[positions[valid]], weights[valid]
