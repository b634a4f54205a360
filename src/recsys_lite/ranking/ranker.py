"""A second stage: LightGBM LambdaRank over the merged candidates of several retrievers.
Retrieval (ranking/candidates.py, ranking/ranker_stage.py) merges the top N of each retriever
(any registered models), trending items and items bought together with the user's recent ones;
the ranker orders that set from features of the user, the item, the pair and recent activity
(ranking/ranker_features.py), learnt at a few time cuts inside the training events
(ranking/ranker_training.py). Then every retriever is fitted again on all events and the
booster is kept, as the served first stage, unless a single source beat it on validation.
"""

from __future__ import annotations

import json
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pydantic import Field

from recsys_lite.config import Settings, get_settings
from recsys_lite.models.base import HISTORY_LENGTH
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.params import ModelParams
from recsys_lite.models.registry import create_model, register
from recsys_lite.models.types import ForgottenEvents, History, Ranked, TrainingData
from recsys_lite.ranking.candidates import CoVisitation
from recsys_lite.ranking.compiled_trees import CompiledTrees, default_cache_dir
from recsys_lite.ranking.features import LONGEST_WINDOW, LiveCounters, WindowCounters
from recsys_lite.ranking.ranker_features import BATCH_USERS, RankerFeatures
from recsys_lite.ranking.ranker_stage import FirstStage
from recsys_lite.ranking.ranker_training import Examples, RankerTraining


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


def _booster(text: str) -> Any:
    import lightgbm

    return lightgbm.Booster(model_str=text)


@register("ranker")
class RankerModel(RankerTraining, RankerFeatures):
    params_type = RankerParams
    params: RankerParams
    _compiled: CompiledTrees | None = None  # the booster as native code, where it compiles

    # ----- training ---------------------------------------------------------------------------

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
        found: list[Examples] = []
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
            self._train_booster(Examples.concatenate(found), lightgbm)
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
            # calibrated too: a retriever HNSW cannot serve well is scored exactly
            sample = model.calibration_queries() if vectors is not None else None
            queries, groups = sample if sample is not None else (None, None)
            built = (
                None
                if vectors is None
                else VectorIndex.build(vectors, kind, own, queries, groups=groups)  # type: ignore[arg-type]
            )
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
