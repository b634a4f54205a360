"""The recent events a model keeps per user (``Recommender.history_indptr`` and the arrays it
delimits, oldest first), read for many users at once, and how their weight fades with age."""

from __future__ import annotations

import numpy as np


def history_events(
    indptr: np.ndarray, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept events of ``users``, user after user: the row of each (the position of its
    user in ``users``), its index into the history arrays, and its age in events (0 for the
    user's newest)."""
    users = np.asarray(users, dtype=np.int64)
    starts = indptr[users]
    lengths = indptr[users + 1] - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, np.repeat(starts, lengths) + offsets, lengths[rows] - 1 - offsets


def recency_decay(ages: np.ndarray, half_life: float) -> np.ndarray:
    """Weight of an event ``ages`` events old: it halves every ``half_life`` events."""
    decay: np.ndarray = np.power(0.5, ages / half_life)
    return decay
