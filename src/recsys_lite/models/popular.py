"""Popularity: all-time, or trending over a recent window. The baseline every model must beat."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recsys_lite.data.interactions import SECONDS_PER_DAY
from recsys_lite.models.base import Recommender
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import register
from recsys_lite.models.types import ForgottenEvents, History, TrainingData


class PopularParams(ModelParams):
    window_days: float | None = Field(
        None, gt=0, description="count only the last N days before the newest event (trending)"
    )
    distinct_users: bool = Field(
        True, description="count each user once per item rather than summing event weights"
    )


@register("popular")
class PopularModel(Recommender):
    params_type = PopularParams
    params: PopularParams
    supports_new_items = True

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        items = data.event_items
        ts = data.events.column("ts").to_numpy()
        recent = np.ones(len(ts), dtype=bool)
        if self.params.window_days is not None:
            recent = ts >= ts.max() - self.params.window_days * SECONDS_PER_DAY
        if self.params.distinct_users:
            users = data.event_users
            pairs = np.unique(users[recent].astype(np.int64) * len(self.item_map) + items[recent])
            counts = np.bincount(pairs % len(self.item_map), minlength=len(self.item_map))
        else:
            weights = data.event_weights
            counts = np.bincount(items[recent], weights[recent], minlength=len(self.item_map))
        # Ties (and items outside a trending window) are broken by all-time popularity.
        tie_break = self.item_popularity / (self.item_popularity.max() + 1.0)
        self.scores = (counts + tie_break).astype(np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return np.tile(self.scores, (len(users), 1))

    def score_history(self, history: History) -> np.ndarray:
        return np.array(self.scores, copy=True)

    def _add_items(self, count: int, vectors: np.ndarray | None) -> None:
        self.scores = np.concatenate([self.scores, np.zeros(count, dtype=np.float32)])

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores}

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.scores = arrays["scores"]

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        """Subtract the users' part of each count, which is what a refit without them counts.

        All-time counts come from their matrix rows, which hold every event they had (events
        the weighting gives no weight are found in their kept history); trending counts come
        from their kept history, which holds every event in the window unless a user had more
        than HISTORY_LENGTH events in it. The window stays where training put it.
        """
        contributed = np.asarray((removed > 0).sum(axis=0), dtype=np.float64).ravel()
        before = self.item_popularity + contributed  # forgetting.py has already subtracted it
        counts = self.scores - before / (before.max() + 1.0)
        history = events.history
        in_window = np.ones(len(history), dtype=bool)
        if self.params.window_days is not None:
            start = events.newest_ts - self.params.window_days * SECONDS_PER_DAY
            in_window = history.ts >= start
        n_items = len(self.item_map)
        if self.params.distinct_users:
            pairs = [events.history_rows[in_window] * n_items + history.items[in_window]]
            if self.params.window_days is None:
                rows, items = removed.nonzero()
                pairs.append(rows.astype(np.int64) * n_items + items)
            touched = np.unique(np.concatenate(pairs)) % n_items
            counts = np.round(counts) - np.bincount(touched, minlength=n_items)
        elif self.params.window_days is None and self.params.weighting.scheme == "none":
            counts = counts - np.asarray(removed.sum(axis=0)).ravel()
        else:
            counts = counts - np.bincount(
                history.items[in_window], history.weights[in_window], minlength=n_items
            )
        tie_break = self.item_popularity / (self.item_popularity.max() + 1.0)
        self.scores = (np.maximum(counts, 0.0) + tie_break).astype(np.float32)
