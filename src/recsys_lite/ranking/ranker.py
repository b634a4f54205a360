"""A second stage: LightGBM LambdaRank over the merged candidates of several retrievers.

Retrieval (ranking/candidates.py) merges the top N of each retriever (any registered models),
trending items and items bought together with the user's recent ones. The ranker orders that
set from features of the user, the item, the pair and recent activity: each source's rank and
score, category and brand affinity, item popularity over several windows, price relative to
what the user usually buys, the fresh counters (ranking/features.py), time since the user's
last event.

Training is a time split inside the training events, at a few cuts: retrievers are fitted on
the events up to a cut, features are computed at the cut from those events alone, and labels
are the items each user chose after it (up to the next cut), so no feature can see a label.
A share of those (cut, user) groups is held out: the
ranker is served only if its NDCG@10 there beats the best single source's; otherwise the model
serves that source's ranking (``validation`` records which, and the figures). Then every
retriever is fitted again on all events and the booster is kept, as the served first stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import Field

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.interactions import SECONDS_PER_DAY, build_interactions
from recsys_lite.evaluation.metrics import ndcg
from recsys_lite.models.base import (
    HISTORY_LENGTH,
    ForgottenEvents,
    History,
    Ranked,
    Recommender,
    TrainingData,
)
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import create_model, register
from recsys_lite.ranking.candidates import (
    Candidates,
    CoVisitation,
    SourceTop,
    merge_tops,
    recall_by_source,
)
from recsys_lite.ranking.compiled_trees import CompiledTrees, default_cache_dir
from recsys_lite.ranking.features import (
    FRESH_WINDOWS,
    LONGEST_WINDOW,
    EventCounts,
    LiveCounters,
    WindowCounters,
    fresh_features,
)
from recsys_lite.ranking.ranker_stage import FirstStage

ITEM_WINDOWS_DAYS = (7, 30)  # popularity windows besides the fresh ones and all time
VALIDATION_K = 10
BATCH_USERS = 256


class RankerParams(ModelParams):
    retrievers: list[str] = Field(
        default_factory=lambda: ["als"], description="registered models whose top N are merged"
    )
    retriever_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="params per retriever name"
    )
    candidates: int = Field(200, ge=10, le=5_000, description="top N taken from each source")
    label_fraction: float = Field(
        0.1, gt=0, lt=1, description="share of training events (by time) in each label window"
    )
    cuts: int = Field(3, ge=1, le=8, description="time cuts, each with its label window after")
    max_train_users: int = Field(2_000, ge=10, description="users sampled for ranker training")
    validation_share: float = Field(
        0.25, gt=0, lt=1, description="share of those users held out to decide what is served"
    )
    recent_items: int = Field(10, ge=1, le=HISTORY_LENGTH, description="for bought-together")
    together_neighbours: int | None = Field(
        200, ge=1, description="bought-together partners kept per item (None: every pair)"
    )
    trend_days: float = Field(7.0, gt=0, description="window of the trending source")
    # A retriever's top N through HNSW: the served top 10's settings (8 links, 32 searched)
    # found 0.43 of the exact top 200 on a 100k-item shop; 32 links and 200 found 0.96.
    index_links: int = Field(32, ge=2, le=64, description="HNSW links per item (retrievers)")
    index_ef_search: int = Field(200, ge=1, description="HNSW candidate list (retrievers)")
    trees: int = Field(150, ge=1, le=5_000)
    learning_rate: float = Field(0.05, gt=0, le=1)
    leaves: int = Field(31, ge=2, le=1_024)
    min_rows_in_leaf: int = Field(20, ge=1)
    random_state: int = 42


ITEM_FEATURES = (
    "item_events_5m",
    "item_events_1h",
    "item_events_1d",
    "item_velocity",
    *(f"item_popularity_{d}d" for d in ITEM_WINDOWS_DAYS),
    "item_popularity_all",
    "price",
)


def _booster(text: str) -> Any:
    import lightgbm

    return lightgbm.Booster(model_str=text)


@register("ranker")
class RankerModel(Recommender):
    params_type = RankerParams
    params: RankerParams
    _live: LiveCounters | None = None  # item counters fed by the API's event path
    # item_category and item_brand as they were when _shifted_codes derived its arrays
    _n_codes: tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, int]]] | None = None
    _compiled: CompiledTrees | None = None  # the booster as native code, where it compiles

    # ----- training ---------------------------------------------------------------------------

    def source_names(self) -> list[str]:
        return [*self.params.retrievers, "trending", "together"]

    def _fit(self, data: TrainingData, show_progress: bool) -> None:
        import lightgbm

        self._catalog_codes(data.catalog)
        self._booster_cache: Any = None
        events = data.events
        ts = events.column("ts").to_numpy()
        # Several cuts, each labelled by the window up to the next: more users to learn from
        # where few are active in any one window. A basket (a user's events sharing a second)
        # stays on one side of each cut, as in evaluation.
        shares = [1.0 - self.params.label_fraction * k for k in range(1, self.params.cuts + 1)]
        cuts = [int(np.quantile(ts, share)) for share in shares if share > 0]
        self.validation: dict[str, Any] = {"cut_ts": cuts[0], "cuts": cuts, "served": "ranker"}
        self.booster_text = ""
        self.fallback = -1
        found: list[_Examples] = []
        label_end = np.iinfo(np.int64).max
        for cut in cuts:
            before = events.filter(pa.array(ts <= cut))
            after = events.filter(pa.array((ts > cut) & (ts <= label_end)))
            label_end = cut
            if before.num_rows and after.num_rows:
                examples = self.training_examples(before, after, data.catalog)
                if examples is not None:
                    found.append(examples)
        if found:
            self._train_booster(_Examples.concatenate(found), lightgbm)
        if not self.booster_text:
            self.validation["served"] = self.source_names()[0]
            self.fallback = 0
        self.stage = self._build_stage(events, data.catalog)
        ts_all = events.column("ts").to_numpy().astype(np.int64)
        last_day = ts_all > self.stage.instant - LONGEST_WINDOW
        self.last_day_items = data.event_items[last_day]
        self.last_day_ts = ts_all[last_day]
        self._live = None
        self._prepare_booster()

    def training_examples(
        self, before: pa.Table, after: pa.Table, catalog: pa.Table | None
    ) -> _Examples | None:
        """Features at the cut from ``before`` alone; labels from ``after`` (later events)."""
        stage = self._build_stage(before, catalog)
        interactions = build_interactions(before, self.params.weighting, item_map=self.item_map)
        seen_matrix = interactions.matrix
        histories = _histories(before, interactions.user_map.to_index(before.column("user_id")),
                               self.item_map.to_index(before.column("item_id")))  # fmt: skip
        label_users = interactions.user_map.to_index(after.column("user_id"), strict=False)
        label_items = self.item_map.to_index(after.column("item_id"), strict=False)
        known = (label_users >= 0) & (label_items >= 0)
        pairs = np.unique(np.stack([label_users[known], label_items[known]], axis=1), axis=0)
        if not len(pairs):
            return None
        pairs = pairs[np.asarray(seen_matrix[pairs[:, 0], pairs[:, 1]]).ravel() == 0]
        users = np.unique(pairs[:, 0])
        rng = np.random.default_rng(self.params.random_state)
        if len(users) > self.params.max_train_users:
            users = np.sort(rng.choice(users, self.params.max_train_users, replace=False))
        starts = np.searchsorted(pairs[:, 0], users)
        ends = np.searchsorted(pairs[:, 0], users, side="right")
        targets = [pairs[s:e, 1] for s, e in zip(starts, ends, strict=True)]
        user_ids = interactions.user_map.ids[users]
        rows = self._rows_for(stage, user_ids, [histories(u) for u in users],
                              [seen_matrix[u].indices for u in users])  # fmt: skip
        labels = [np.isin(found.items, wanted).astype(np.float32)
                  for (found, _), wanted in zip(rows, targets, strict=True)]  # fmt: skip
        return _Examples(user_ids, rows, labels, targets, stage.instant)

    def _train_booster(self, examples: _Examples, lightgbm: Any) -> None:
        n = len(examples.rows)
        rng = np.random.default_rng(self.params.random_state)
        held_out = rng.random(n) < self.params.validation_share
        useful = np.array([label.any() for label in examples.labels])
        fit_users = np.flatnonzero(useful & ~held_out)
        if not len(fit_users):
            return
        features = np.vstack([examples.rows[u][1] for u in fit_users])
        labels = np.concatenate([examples.labels[u] for u in fit_users])
        groups = [len(examples.labels[u]) for u in fit_users]
        p = self.params
        booster = lightgbm.train(
            {
                "objective": "lambdarank",
                "learning_rate": p.learning_rate,
                "num_leaves": p.leaves,
                "min_data_in_leaf": p.min_rows_in_leaf,
                "lambdarank_truncation_level": 20,
                "num_threads": max(self.threads, 1),
                "seed": p.random_state,
                "deterministic": True,
                "verbose": -1,
            },
            lightgbm.Dataset(features, labels, group=groups, feature_name=self.feature_names()),
            num_boost_round=p.trees,
        )
        self.booster_text = booster.model_to_string()
        names = self.source_names()
        check = np.flatnonzero(held_out)
        candidates = [examples.rows[u][0] for u in range(n)]
        self.validation["recall_at_n"] = recall_by_source(
            candidates, examples.targets, names
        )  # fmt: skip
        self.validation["train_users"] = len(fit_users)
        self.validation["validation_users"] = len(check)
        if not len(check):
            return
        scores: dict[str, float] = {}
        for source, name in enumerate(names):
            scores[name] = _ndcg(
                [(-examples.rows[u][0].ranks[:, source], examples.rows[u][0].items) for u in check],
                [examples.targets[u] for u in check],
            )
        predicted = [
            (booster.predict(examples.rows[u][1]), examples.rows[u][0].items) for u in check
        ]
        scores["ranker"] = _ndcg(predicted, [examples.targets[u] for u in check])
        self.validation["ndcg@10"] = scores
        best = max(range(len(names)), key=lambda s: scores[names[s]])
        if scores["ranker"] <= scores[names[best]]:
            self.fallback = best
            self.validation["served"] = names[best]

    def _build_stage(self, events: pa.Table, catalog: pa.Table | None) -> FirstStage:
        retrievers, positions = [], []
        for name in self.params.retrievers:
            model = create_model(name, self.params.retriever_params.get(name))
            model.threads = self.threads
            model.fit(events, _catalog_for(catalog, events))
            retrievers.append(model)
            positions.append(self.item_map.to_index(model.item_map.ids, strict=False))
        interactions = build_interactions(events, self.params.weighting, item_map=self.item_map)
        items = self.item_map.to_index(events.column("item_id"))
        ts = events.column("ts").to_numpy().astype(np.int64)
        instant = int(ts.max())
        return FirstStage(
            retrievers,
            positions,
            CoVisitation.build(interactions.matrix, self.params.together_neighbours),
            self._trending(items, ts, instant),
            self._item_features(items, ts, instant),
            instant,
        )

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

    # ----- features ---------------------------------------------------------------------------

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

    # ----- fresh counters online ---------------------------------------------------------------

    def observe_events(self, user_ids: list[str], item_ids: list[str], stamps: list[int]) -> None:
        """Count events as they arrive (online/state.py), on top of training's last day, so an
        item's fresh features at any later instant are what ``EventCounts`` computes over the
        training events plus these."""
        if self._live is None:
            live = WindowCounters()
            for item, ts in zip(self.item_map.ids[self.last_day_items].tolist(),
                                self.last_day_ts.tolist(), strict=True):  # fmt: skip
                live.add(item, ts)
            self._live = live
        for item, ts in zip(item_ids, stamps, strict=True):
            self._live.add(item, int(ts))

    def fresh_seed(self) -> tuple[list[str], list[int], int]:
        """Training's last day of events (item ids, times) and the instant it ends at: what
        online counters start from."""
        ids = self.item_map.ids[self.last_day_items].tolist()
        return ids, self.last_day_ts.tolist(), int(self.stage.instant)

    def use_live_counters(self, live: LiveCounters) -> None:
        """Count online events there (seeded by its owner) instead of in this process."""
        self._live = live

    def item_fresh(self, items: np.ndarray, at: int) -> dict[str, np.ndarray]:
        """The items' fresh features at ``at`` from the online counters."""
        live = self._live
        assert live is not None
        ids = self.item_map.ids[items].tolist()
        return fresh_features(lambda w: np.zeros(len(ids)), lambda w: live.count(ids, at, w))

    # ----- scoring ----------------------------------------------------------------------------

    def _prepare_booster(self) -> None:
        """Compile the trees at training and at load (from the cache when compiled before)
        rather than at the first request; LightGBM is loaded only if they do not compile."""
        self._booster_cache = None
        self._compiled = None
        if self.booster_text and self.fallback < 0:
            self._compiled = CompiledTrees.build(self.booster_text, default_cache_dir())

    def _predict(self, features: np.ndarray) -> np.ndarray:
        if self._compiled is not None:
            return self._compiled.predict(features).astype(np.float32)
        if self._booster_cache is None:
            self._booster_cache = _booster(self.booster_text)
        return np.asarray(self._booster_cache.predict(features, num_threads=1), np.float32)

    def _candidates_for(
        self, user_ids: np.ndarray | None, histories: list[History], seen: list[np.ndarray]
    ) -> list[Ranked]:
        """Each user's ranking as the only items it scores (every other item is -inf): the
        merged candidates by the booster, then what the user already has, after every
        candidate (it stays in a ranking that keeps it)."""
        out = []
        tops = self.stage.tops(user_ids, histories, seen, *self._depths())
        for user_tops, history, mine in zip(tops, histories, seen, strict=True):
            found, features = self._features(self.stage, user_tops, history)
            if not len(found.items):
                out.append(Ranked(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
                continue
            predicted = self._predict(features)
            below = np.full(len(mine), predicted.min() - 1.0, dtype=np.float32)
            out.append(
                Ranked(
                    np.concatenate([found.items, mine]).astype(np.int64),
                    np.concatenate([predicted, below]).astype(np.float32),
                )
            )
        return out

    def _depths(self) -> tuple[int, int]:
        """Each source's N and the recent items bought-together reads."""
        return self.params.candidates, self.params.recent_items

    def _fallback_scores(self, user_ids: np.ndarray | None, histories: list[History]) -> np.ndarray:
        scores = self.stage.dense_scores(user_ids, histories, self.params.recent_items)
        return scores[self.fallback]

    def score_user_candidates(self, user: int) -> Ranked | None:
        if self.fallback >= 0:
            return None
        ids = self.user_map.ids[[user]]
        return self._candidates_for(ids, [self.history(user)], [self.seen_items(user)])[0]

    def score_history_candidates(self, history: History) -> Ranked | None:
        if self.fallback >= 0 or not len(history):
            return None
        return self._candidates_for(None, [history], [np.unique(history.items)])[0]

    def score_users(self, users: np.ndarray) -> np.ndarray:
        histories = [self.history(int(u)) for u in users]
        out = np.full((len(users), len(self.item_map)), -np.inf, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            ids, some = self.user_map.ids[batch], histories[start : start + BATCH_USERS]
            if self.fallback >= 0:
                out[start : start + len(batch)] = self._fallback_scores(ids, some)
                continue
            seen = [self.seen_items(int(user)) for user in batch]
            for n, ranked in enumerate(self._candidates_for(ids, some, seen)):
                out[start + n, ranked.items] = ranked.scores
        return out

    def score_history(self, history: History) -> np.ndarray | None:
        if not len(history):
            return None
        if self.fallback >= 0:
            return np.array(self._fallback_scores(None, [history])[0], dtype=np.float32)
        ranked = self._candidates_for(None, [history], [np.unique(history.items)])[0]
        out = np.full(len(self.item_map), -np.inf, dtype=np.float32)
        out[ranked.items] = ranked.scores
        return out

    def build_indexes(self, kind: str = "auto", settings: Settings | None = None) -> None:
        """The ranker has no vectors of its own; each retriever that has them gets its
        user-to-item index, which retrieves its candidates for known users (saved with the
        model). An exact ("flat") index is not kept: over the catalog, the retriever's own
        scores cost less than a flat search."""
        super().build_indexes(kind, settings)
        own = self._index_settings(settings)
        for model in self.stage.retrievers:
            vectors = model.item_vectors()
            built = None if vectors is None else VectorIndex.build(vectors, kind, own)  # type: ignore[arg-type]
            model.user_index = built if built is not None and built.kind != "flat" else None
            model.item_index = None

    def _index_settings(self, settings: Settings | None) -> Settings:
        update = {
            "faiss_hnsw_m": self.params.index_links,
            "faiss_ef_search": self.params.index_ef_search,
        }
        return (settings or get_settings()).model_copy(update=update)

    # ----- persistence ------------------------------------------------------------------------

    def _model_state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "booster": np.array([self.booster_text]),
            "validation": np.array([json.dumps(self.validation)]),
            "fallback": np.array([self.fallback]),
            "trending": self.stage.trending,
            "item_features": self.stage.item_features,
            "instant": np.array([self.stage.instant]),
            "item_category": self.item_category,
            "item_brand": self.item_brand,
            "item_price": self.item_price,
            "last_day_items": self.last_day_items,
            "last_day_ts": self.last_day_ts,
        }
        for name, model in zip(self.params.retrievers, self.stage.retrievers, strict=True):
            for key, value in model.state().items():
                arrays[f"retriever.{name}.{key}"] = value
            index = model.user_index
            if isinstance(index, VectorIndex):
                arrays[f"retriever_index.{name}"] = faiss.serialize_index(index.index)
                arrays[f"retriever_index_kind.{name}"] = np.array([index.kind])
        arrays.update(self.stage.covisit.state())
        return arrays

    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.booster_text = str(arrays["booster"][0])
        self._booster_cache = None
        self.validation = json.loads(str(arrays["validation"][0]))
        self.fallback = int(arrays["fallback"][0])
        self._prepare_booster()
        self.item_category = arrays["item_category"]
        self.item_brand = arrays["item_brand"]
        self.item_price = arrays["item_price"]
        self.last_day_items = arrays["last_day_items"]
        self.last_day_ts = arrays["last_day_ts"]
        self._live = None
        retrievers = []
        for name in self.params.retrievers:
            prefix = f"retriever.{name}."
            model = create_model(name, self.params.retriever_params.get(name))
            model.load_state(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
            if f"retriever_index.{name}" in arrays:
                index = faiss.deserialize_index(arrays[f"retriever_index.{name}"])
                kind = str(arrays[f"retriever_index_kind.{name}"][0])
                model.user_index = VectorIndex(index, kind)  # type: ignore[arg-type]
                model.user_index.configure(self._index_settings(None))
            retrievers.append(model)
        covisit = CoVisitation.from_state(arrays)
        self.stage = FirstStage(
            retrievers,
            [self.item_map.to_index(m.item_map.ids, strict=False) for m in retrievers],
            covisit or CoVisitation.build(self.user_items, self.params.together_neighbours),
            arrays["trending"],
            arrays["item_features"],
            int(arrays["instant"][0]),
        )

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        """Each retriever forgets the users as it would on its own; the bought-together table
        loses their pairs (``relearn``: it is built again from the remaining rows). A
        retriever that relearns its items drops its index, whose vectors are the old ones,
        until ``build_indexes`` (the erasure calls it). The booster learned from features, not
        from identities, and is kept until the next retrain."""
        from recsys_lite.models.forgetting import forget_users

        remaining = set(self.user_map.ids.tolist())
        for model in self.stage.retrievers:
            users = np.flatnonzero([u not in remaining for u in model.user_map.ids.tolist()])
            forget_users(model, users, relearn=events.relearn)
            if events.relearn:
                model.user_index = None
        if events.relearn:  # the model an erasure publishes: the table as training builds it
            neighbours = self.params.together_neighbours
            self.stage.covisit = CoVisitation.build(self.user_items, neighbours)
        else:  # an API process: at once
            self.stage.covisit.forget(removed, self.user_items)


@dataclass(frozen=True)
class _Examples:
    user_ids: np.ndarray
    rows: list[tuple[Candidates, np.ndarray]]  # per user: candidates and their features
    labels: list[np.ndarray]  # per user: 1 where the candidate was chosen after the cut
    targets: list[np.ndarray]  # per user: every item chosen after the cut (not seen before)
    instant: int  # the cut: newest event the features saw

    @staticmethod
    def concatenate(parts: list[_Examples]) -> _Examples:
        return _Examples(
            np.concatenate([p.user_ids for p in parts]),
            [row for p in parts for row in p.rows],
            [label for p in parts for label in p.labels],
            [target for p in parts for target in p.targets],
            max(p.instant for p in parts),
        )


def _ndcg(ranked: list[tuple[np.ndarray, np.ndarray]], targets: list[np.ndarray]) -> float:
    """Mean NDCG@10 over users of (score per candidate, candidate items) against targets."""
    hits = np.zeros((len(ranked), VALIDATION_K), dtype=bool)
    for row, ((scores, items), wanted) in enumerate(zip(ranked, targets, strict=True)):
        order = np.argsort(-scores, kind="stable")[:VALIDATION_K]
        order = order[np.isfinite(scores[order])]
        hits[row, : len(order)] = np.isin(items[order], wanted)
    n_relevant = np.array([len(t) for t in targets])
    return float(ndcg(hits, n_relevant, VALIDATION_K).mean()) if len(ranked) else 0.0


def _median(values: np.ndarray) -> float:
    """np.median of a few values, as it computes it (the middle one, or the mean of the two
    middle ones), without its general machinery, which cost more than the features."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float(np.mean(ordered[middle - 1 : middle + 1]))


def _histories(events: pa.Table, users: np.ndarray, items: np.ndarray) -> Any:
    """Each user's last HISTORY_LENGTH events (events are time-ordered), as the served model
    keeps them: a function of the user index."""
    ts = events.column("ts").to_numpy()
    order = np.argsort(users, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=users.max() + 1))])

    def history(user: int) -> History:
        picked = order[indptr[user] : indptr[user + 1]][-HISTORY_LENGTH:]
        return History(items[picked], np.ones(len(picked), dtype=np.float32), ts[picked])

    return history


def _catalog_for(catalog: pa.Table | None, events: pa.Table) -> pa.Table | None:
    """The catalog rows of the items ``events`` mention: a retriever fitted before the cut
    must not learn of items first seen after it."""
    if catalog is None:
        return None
    return catalog.filter(
        pc.is_in(catalog.column("item_id"), value_set=pc.unique(events.column("item_id")))
    )
