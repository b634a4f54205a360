"""The ranker's features: one definition of its rows, built the same way at training (at each
cut, from that cut's first stage) and when serving. A row describes a merged candidate for a
user: each source's rank and score, category and brand affinity, item popularity over several
windows, price relative to what the user usually buys, the fresh counters (ranking/features.py,
read online when the API feeds them), time since the user's last event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.interactions import SECONDS_PER_DAY
from recsys_lite.models.base import Recommender
from recsys_lite.models.types import History
from recsys_lite.ranking.candidates import Candidates, SourceTop, merge_tops
from recsys_lite.ranking.features import (
    FRESH_WINDOWS,
    EventCounts,
    LiveCounters,
    fresh_features,
)
from recsys_lite.ranking.ranker_stage import FirstStage

if TYPE_CHECKING:
    from recsys_lite.ranking.ranker import RankerParams

ITEM_WINDOWS_DAYS = (7, 30)  # popularity windows besides the fresh ones and all time
BATCH_USERS = 256

ITEM_FEATURES = (
    "item_events_5m",
    "item_events_1h",
    "item_events_1d",
    "item_velocity",
    *(f"item_popularity_{d}d" for d in ITEM_WINDOWS_DAYS),
    "item_popularity_all",
    "price",
)


class RankerFeatures(Recommender):
    """The feature rows of the ranker model (ranking/ranker.py), from its first stage, its
    catalog codes and prices, and its online counters when fed."""

    params: RankerParams
    stage: FirstStage
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray
    _live: LiveCounters | None = None  # item counters fed by the API's event path
    # item_category and item_brand as they were when _shifted_codes derived its arrays
    _n_codes: tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, int]]] | None = None

    def source_names(self) -> list[str]:
        return [*self.params.retrievers, "trending", "together"]

    def feature_names(self) -> list[str]:
        names = []
        for source in self.source_names():
            names += [f"{source}_rank", f"{source}_score"]
        return [
            *names,
            "sources_retrieving",
            *ITEM_FEATURES[:-1],
            "price_to_user_median",
            "category_affinity",
            "brand_affinity",
            "user_events_5m",
            "user_events_1h",
            "user_events_1d",
            "seconds_since_last_event",
            "history_length",
        ]

    def _depths(self) -> tuple[int, int]:
        """Each source's N and the recent items bought-together reads."""
        return self.params.candidates, self.params.recent_items

    def _rows_for(
        self,
        stage: FirstStage,
        user_ids: np.ndarray,
        histories: list[History],
        excluded: list[np.ndarray],
    ) -> list[tuple[Candidates, np.ndarray]]:
        out = []
        for start in range(0, len(user_ids), BATCH_USERS):
            batch = slice(start, start + BATCH_USERS)
            tops = stage.tops(user_ids[batch], histories[batch], excluded[batch], *self._depths())
            for user_tops, history in zip(tops, histories[batch], strict=True):
                out.append(self._features(stage, user_tops, history))
        return out

    def _features(
        self, stage: FirstStage, tops: list[SourceTop], history: History
    ) -> tuple[Candidates, np.ndarray]:
        found = merge_tops(tops, self.params.candidates)
        items = found.items
        n, sources = found.ranks.shape
        instant = max(stage.instant, int(history.ts.max()) if len(history) else 0)
        ts = history.ts.astype(np.int64)
        # written column by column into one float32 matrix, in feature_names' order: a list
        # of columns stacked cost more than the features' arithmetic
        out = np.empty((n, 2 * sources + len(ITEM_FEATURES) + 8), dtype=np.float32)
        out[:, 0 : 2 * sources : 2] = found.ranks
        out[:, 1 : 2 * sources : 2] = found.scores
        at = 2 * sources
        out[:, at] = (found.ranks <= found.depth).sum(axis=1)
        at += 1
        width = len(ITEM_FEATURES) - 1  # all but the price
        out[:, at : at + width] = stage.item_features[items, :width]
        if self._live is not None and stage is self.stage:
            live = self.item_fresh(items, max(instant, self._live.newest))
            for k, name in enumerate(ITEM_FEATURES[:4]):
                out[:, at + k] = live[name]
        at += width
        price = self.item_price[items]
        own_prices = self.item_price[history.items] if len(history) else np.zeros(0)
        own_prices = own_prices[np.isfinite(own_prices)]
        usual = _median(own_prices) if len(own_prices) else np.nan
        out[:, at] = price / usual if usual > 0 else np.nan
        at += 1
        for shifted, n_codes in self._shifted_codes():
            # the share of the user's events in each candidate's category (brand); bin 0
            # holds the items without one, whose share is 0
            share = np.bincount(shifted[history.items], minlength=n_codes + 1) / max(
                len(history), 1
            )
            share[0] = 0.0
            out[:, at] = share[shifted[items]]
            at += 1
        # the user's fresh counts (user_events_*, in FRESH_WINDOWS' order): one number each,
        # broadcast over the candidates
        for seconds in FRESH_WINDOWS.values():
            out[:, at] = np.count_nonzero((ts > instant - seconds) & (ts <= instant))
            at += 1
        out[:, at] = instant - int(ts.max()) if len(ts) else np.nan
        out[:, at + 1] = len(history)
        return found, out

    def _shifted_codes(self) -> list[tuple[np.ndarray, int]]:
        """Category and brand codes plus one (0: none) with how many there are: taken once
        per model, as finding the largest code over the catalog, and masking the items
        without one, cost more per request than the rest of the features."""
        held = self._n_codes
        if held is None or held[0] is not self.item_category or held[1] is not self.item_brand:
            shifted = [(codes + 1, int(codes.max(initial=-1)) + 1)
                       for codes in (self.item_category, self.item_brand)]  # fmt: skip
            held = self._n_codes = (self.item_category, self.item_brand, shifted)
        return held[2]

    def item_fresh(self, items: np.ndarray, at: int) -> dict[str, np.ndarray]:
        """The items' fresh features at ``at`` from the online counters."""
        live = self._live
        assert live is not None
        ids = self.item_map.ids[items].tolist()
        return fresh_features(lambda w: np.zeros(len(ids)), lambda w: live.count(ids, at, w))

    # ----- item columns, computed once per first stage ----------------------------------------

    def _trending(self, items: np.ndarray, ts: np.ndarray, instant: int) -> np.ndarray:
        recent = ts > instant - self.params.trend_days * SECONDS_PER_DAY
        counts = np.bincount(items[recent], minlength=len(self.item_map)).astype(np.float32)
        everything = np.bincount(items, minlength=len(self.item_map)).astype(np.float32)
        return np.asarray(counts + everything / (everything.max() + 1.0), dtype=np.float32)

    def _item_features(self, items: np.ndarray, ts: np.ndarray, instant: int) -> np.ndarray:
        counts = EventCounts(items, ts)
        every = np.arange(len(self.item_map))
        fresh = fresh_features(
            lambda w: np.zeros(len(every)), lambda w: counts.count(every, instant, w)
        )
        columns = [fresh[name] for name in ITEM_FEATURES[:4]]
        for days in ITEM_WINDOWS_DAYS:
            columns.append(counts.count(every, instant, int(days * SECONDS_PER_DAY)))
        columns.append(np.bincount(items, minlength=len(self.item_map)))
        columns.append(self.item_price)
        return np.stack(columns, axis=1).astype(np.float32)

    def _catalog_codes(self, catalog: pa.Table | None) -> None:
        n = len(self.item_map)
        self.item_category = np.full(n, -1, dtype=np.int64)
        self.item_brand = np.full(n, -1, dtype=np.int64)
        self.item_price = np.full(n, np.nan, dtype=np.float32)
        if catalog is None:
            return
        for column, target in (("category", self.item_category), ("brand", self.item_brand)):
            if column in catalog.column_names:
                codes = pc.dictionary_encode(catalog.column(column)).combine_chunks()
                target[:] = codes.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        if "price" in catalog.column_names:
            price = pc.cast(catalog.column("price"), pa.float64()).fill_null(np.nan)
            self.item_price[:] = price.to_numpy()


def _median(values: np.ndarray) -> float:
    """np.median of a few values, as it computes it (the middle one, or the mean of the two
    middle ones), without its general machinery, which cost more than the features."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float(np.mean(ordered[middle - 1 : middle + 1]))
