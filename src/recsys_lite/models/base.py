"""The one model interface and registry.

Public methods take and return external ids; subclasses implement ``_fit`` and ``score_users``
on internal indices. Every model keeps its training interactions (to exclude what a user already
has) and item popularity (the fallback for users it has never seen).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys_lite.config import Settings
from recsys_lite.data.idmap import IdMap
from recsys_lite.data.interactions import build_interactions, event_weights
from recsys_lite.errors import EmptyDataError, NotFittedError
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.params import ModelParams, parse_params
from recsys_lite.models.retrieval import blocked_scores, finite_top, listed_top, search_vectors
from recsys_lite.models.types import ForgottenEvents, History, Ranked, TrainingData, align_catalog
from recsys_lite.models.vector_store import ItemVectorStore
from recsys_lite.models.vectors import unit_rows

HISTORY_LENGTH = 50  # most recent events kept per user for sequence models and fold-in
# sample queries an HNSW index is calibrated on when it is built (models/index.py)
CALIBRATION_QUERIES = 512
CALIBRATION_SEED = 0


class Recommender(ABC):
    name: ClassVar[str]
    params_type: ClassVar[type[ModelParams]] = ModelParams
    # Models that can describe items from catalog features alone put catalog items without
    # events into their item map, so those items can be recommended from day one.
    include_catalog_items: ClassVar[bool] = False
    # Whether add_items can grow the model (new items served before the next retrain).
    supports_new_items: ClassVar[bool] = False

    def __init__(self, params: ModelParams | dict[str, Any] | None = None) -> None:
        self.params = parse_params(self.params_type, params)
        self.user_map = IdMap(np.array([], dtype=str))
        self.item_map = IdMap(np.array([], dtype=str))
        self.user_items = sp.csr_matrix((0, 0), dtype=np.float32)
        self.item_popularity = np.zeros(0, dtype=np.float32)
        self.history_indptr = np.zeros(1, dtype=np.int64)
        self.history_items = np.zeros(0, dtype=np.int64)
        self.history_weights = np.zeros(0, dtype=np.float32)
        self.history_ts = np.zeros(0, dtype=np.int64)
        self.user_index: ItemVectorStore | None = None
        self.item_index: ItemVectorStore | None = None
        self.threads = 0
        # Called by iterative models after each epoch, with the model usable for scoring; the
        # tuner evaluates there and may raise optuna.TrialPruned to stop a hopeless trial.
        self.epoch_callback: Callable[[int], None] | None = None
        self._unit_cache: tuple[np.ndarray | None] | None = None

    def end_epoch(self, epoch: int) -> None:
        if self.epoch_callback is not None:
            self.epoch_callback(epoch)

    # ----- training ---------------------------------------------------------------------------

    def fit(
        self, events: pa.Table, items: pa.Table | None = None, *, show_progress: bool = False
    ) -> Self:
        """Train on events (any order); ``items`` is the catalog, used by feature-aware models."""
        if events.num_rows == 0:
            raise EmptyDataError("no events to train on")
        events = events.take(pc.sort_indices(events, [("ts", "ascending")]))
        item_map = IdMap.from_values(events.column("item_id"))
        if self.include_catalog_items and items is not None and items.num_rows:
            item_map = item_map.add(items.column("item_id").to_pylist())
        interactions = build_interactions(events, self.params.weighting, item_map=item_map)
        self.user_map, self.item_map = interactions.user_map, interactions.item_map
        self.user_items = interactions.matrix
        self.item_popularity = np.asarray(
            (interactions.matrix > 0).sum(axis=0), dtype=np.float32
        ).ravel()
        data = TrainingData(
            interactions=interactions,
            events=events,
            event_users=self.user_map.to_index(events.column("user_id")),
            event_items=self.item_map.to_index(events.column("item_id")),
            event_weights=event_weights(events, self.params.weighting),
            catalog=align_catalog(items, self.item_map) if items is not None else None,
        )
        self._keep_histories(data)
        self._unit_cache = None
        self._fit(data, show_progress)
        self._unit_cache = None
        return self

    def _keep_histories(self, data: TrainingData) -> None:
        """The last HISTORY_LENGTH events of each user, oldest first (events are time-ordered)."""
        order = np.argsort(data.event_users, kind="stable")
        users = data.event_users[order]
        counts = np.bincount(users, minlength=len(self.user_map))
        ends = np.cumsum(counts)
        from_end = ends[users] - np.arange(len(users))  # 1 for each user's newest event
        keep = order[from_end <= HISTORY_LENGTH]
        self.history_indptr = np.concatenate([[0], np.cumsum(np.minimum(counts, HISTORY_LENGTH))])
        self.history_items = data.event_items[keep]
        self.history_weights = data.event_weights[keep]
        self.history_ts = data.events.column("ts").to_numpy()[keep]

    def history(self, user: int) -> History:
        start, end = self.history_indptr[user], self.history_indptr[user + 1]
        return History(
            self.history_items[start:end],
            self.history_weights[start:end],
            self.history_ts[start:end],
        )

    @abstractmethod
    def _fit(self, data: TrainingData, show_progress: bool) -> None: ...

    @property
    def fitted(self) -> bool:
        return len(self.item_map) > 0

    # ----- scoring (internal indices) -----------------------------------------------------------

    @abstractmethod
    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores of every item for each user row: the full ranking."""

    def score_history(self, history: History) -> np.ndarray | None:
        """Scores of every item for a user described only by recent events (fold-in).

        This is how users the model was not trained on, or whose history changed since, get
        personal recommendations. None when the model cannot do it (the caller falls back).
        By default ``item_vectors()`` times ``history_vector``.
        """
        query, vectors = self.history_vector(history), self.item_vectors()
        if query is None or vectors is None:
            return None
        scores: np.ndarray = vectors @ query
        return scores

    def history_vector(self, history: History) -> np.ndarray | None:
        """The user vector a history folds into, for models that score by ``item_vectors()``
        times a user vector: folded-in users are then searched through the same index as
        trained ones. None: the model folds users in otherwise (``score_history``)."""
        return None

    def score_user_candidates(self, user: int) -> Ranked | None:
        """The items a known user's ranking scores, with their scores, when that is a short
        list (every other item is -inf, as in ``score_users``): recommend then picks from the
        list instead of a vector over the catalog. None: ``score_users`` is the ranking."""
        return None

    def score_history_candidates(self, history: History) -> Ranked | None:
        """``score_user_candidates`` for a user described by recent events (see
        ``score_history``); None: ``score_history`` is the ranking."""
        return None

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings whose inner product with ``user_vectors`` is the score, if any."""
        return None

    def user_vectors(self, users: np.ndarray) -> np.ndarray | None:
        return None

    def similarity_vectors(self) -> np.ndarray | None:
        """Unit-length item vectors for item-to-item cosine similarity, if the model has them.

        Models override this when their similarity space differs from their scoring space
        (item2vec compares input vectors but scores with output vectors).
        """
        vectors = self.item_vectors()
        return None if vectors is None else unit_rows(vectors)

    def _unit_vectors(self) -> np.ndarray | None:
        """similarity_vectors, computed once per state of the model (normalising a large
        catalog on every request would cost more than the search)."""
        if self._unit_cache is None:
            self._unit_cache = (self.similarity_vectors(),)
        return self._unit_cache[0]

    def score_similar(self, item: int) -> np.ndarray | None:
        """Similarity of every item to ``item`` for models without item vectors (EASE)."""
        return None

    def build_indexes(self, kind: str = "auto", settings: Settings | None = None) -> None:
        """Faiss indexes for user→item and item→item retrieval (embedding models only)."""
        self._unit_cache = None
        vectors, unit = self.item_vectors(), self._unit_vectors()
        # samples of what each index will be asked, to calibrate HNSW on (models/index.py):
        # shoppers, and items' own unit vectors (similar items, the item itself left out)
        n_items = len(self.item_map)
        rng = np.random.default_rng(CALIBRATION_SEED + 1)
        items = np.sort(rng.choice(n_items, min(CALIBRATION_QUERIES, n_items), replace=False))
        sample = self.calibration_queries() if vectors is not None else None
        queries, groups = sample if sample is not None else (None, None)
        self.user_index = (
            VectorIndex.build(vectors, kind, settings, queries, groups=groups)  # type: ignore[arg-type]
            if vectors is not None
            else None
        )
        self.item_index = (
            VectorIndex.build(unit, kind, settings, unit[items], items)  # type: ignore[arg-type]
            if unit is not None
            else None
        )

    def calibration_queries(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Sample queries of the user-to-item index and their kind (0: trained shoppers'
        vectors, 1: shoppers folded in from their histories, as every shopper with events
        since training is served); the index must serve both kinds."""
        rng = np.random.default_rng(CALIBRATION_SEED)
        n_users = len(self.user_map)
        # in the sampled order: split after sorting, the folded-in half would be the shoppers
        # of the lowest indices, those who appear first in the events
        users = rng.choice(n_users, min(CALIBRATION_QUERIES, n_users), replace=False)
        half = len(users) // 2
        trained = self.user_vectors(users[half:])
        folded = [self.history_vector(self.history(int(user))) for user in users[:half]]
        rows = [np.asarray(row, dtype=np.float32) for row in folded if row is not None]
        parts, kinds = [], []
        for kind, part in enumerate((trained, np.array(rows) if rows else None)):
            if part is not None and len(part):
                parts.append(np.asarray(part, dtype=np.float32))
                kinds.append(np.full(len(part), kind))
        return (np.vstack(parts), np.concatenate(kinds)) if parts else None

    # ----- new items without retraining --------------------------------------------------------

    def add_items(self, item_ids: list[str], vectors: np.ndarray | None = None) -> list[str]:
        """Make catalog items recommendable before they have interactions.

        ``vectors`` are content-based estimates in the model's item space (one row per id),
        used by embedding models and added to their vector stores. Returns the ids that were new.
        """
        self._require_fitted()
        # the first row of each id not yet in the model, in the order given
        first_row: dict[str, int] = {}
        for n, item in enumerate(item_ids):
            first_row.setdefault(item, n)
        fresh = [item for item in first_row if item not in self.item_map]
        if not fresh or not self.supports_new_items:
            return []
        keep = [first_row[item] for item in fresh]
        new_vectors = None if vectors is None else np.asarray(vectors, np.float32)[keep]
        self.item_map = self.item_map.add(fresh)
        n_items = len(self.item_map)
        self.user_items = sp.csr_matrix(
            (self.user_items.data, self.user_items.indices, self.user_items.indptr),
            shape=(self.user_items.shape[0], n_items),
        )
        self.item_popularity = np.concatenate(
            [self.item_popularity, np.zeros(len(fresh), dtype=np.float32)]
        )
        self._add_items(len(fresh), new_vectors)
        self._unit_cache = None
        vectors_now, unit = self.item_vectors(), self._unit_vectors()
        if self.user_index is not None and vectors_now is not None:
            self.user_index.add(vectors_now[-len(fresh) :])
        if self.item_index is not None and unit is not None:
            self.item_index.add(unit[-len(fresh) :])
        return fresh

    def _add_items(self, count: int, vectors: np.ndarray | None) -> None:
        """Grow model-specific item arrays by ``count`` items (when supports_new_items)."""
        raise NotImplementedError

    def content_vectors(self, catalog_rows: pa.Table) -> np.ndarray | None:
        """Item vectors from catalog features alone, for models that have them (hybrids)."""
        return None

    # ----- public API (external ids) ------------------------------------------------------------

    def _forget_users(
        self, keep: np.ndarray, removed: sp.csr_matrix, events: ForgottenEvents
    ) -> None:
        """Drop this model's per-user rows (``keep`` is over the old users) and undo what the
        removed users' interactions (``removed``, their rows; ``events``, their recent events)
        taught it, where it can; see models/forgetting.py. Models without per-user arrays and
        without anything they can undo keep the default."""
        return None

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{self.name} model is not trained")

    def knows_user(self, user_id: str) -> bool:
        return user_id in self.user_map

    def seen_items(self, user: int) -> np.ndarray:
        start, end = self.user_items.indptr[user], self.user_items.indptr[user + 1]
        return np.asarray(self.user_items.indices[start:end])

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        item_mask: np.ndarray | None = None,
        use_index: bool = True,
        exclude: np.ndarray | None = None,
    ) -> Ranked:
        """The user's k best items. ``item_mask`` (bool per item) restricts what may be shown;
        ``exclude`` adds items never to show (e.g. bought since training)."""
        self._require_fitted()
        user = self.user_map.index(user_id, "user")
        excluded = self.seen_items(user) if exclude_seen else np.zeros(0, dtype=np.int64)
        if exclude is not None and len(exclude):
            excluded = np.union1d(excluded, exclude)
        if use_index and self.user_index is not None:
            found = self._search(self.user_index, user, k, excluded, item_mask)
            if found is not None:
                return found
        listed = self.score_user_candidates(user)
        if listed is not None:
            return listed_top(listed, k, excluded, item_mask)
        scores = self.score_users(np.array([user]))[0]
        return finite_top(blocked_scores(scores, excluded, item_mask), k)

    def recommend_history(
        self,
        history: History,
        k: int = 10,
        *,
        exclude: np.ndarray | None = None,
        item_mask: np.ndarray | None = None,
        use_index: bool = True,
    ) -> Ranked | None:
        """Top k for a user described by ``history``; None if the model cannot fold users in.
        Every shopper with events since training is served here, so a model whose fold-in is
        a vector searches its index as for trained users, rather than scoring the catalog."""
        self._require_fitted()
        if use_index and self.user_index is not None:
            vectors, query = self.item_vectors(), self.history_vector(history)
            if vectors is not None and query is not None:
                excluded = np.zeros(0, dtype=np.int64) if exclude is None else exclude
                return self._search_vectors(self.user_index, vectors, query, k, excluded, item_mask)
        listed = self.score_history_candidates(history)
        if listed is not None:
            return listed_top(listed, k, exclude, item_mask)
        scores = self.score_history(history)
        if scores is None:
            return None
        return finite_top(blocked_scores(np.array(scores, dtype=np.float32), exclude, item_mask), k)

    def popular(
        self,
        k: int = 10,
        *,
        item_mask: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> Ranked:
        """Most popular items (by ``popularity`` if given, e.g. with online counts added)."""
        self._require_fitted()
        scores = np.array(self.item_popularity if popularity is None else popularity, copy=True)
        return finite_top(blocked_scores(scores.astype(np.float32), exclude, item_mask), k)

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        *,
        item_mask: np.ndarray | None = None,
        use_index: bool = True,
    ) -> Ranked | None:
        """Most similar items by cosine of item vectors, or the model's own item-item scores;
        None when the model has neither (the API then falls back to popular items)."""
        self._require_fitted()
        item = self.item_map.index(item_id, "item")
        unit = self._unit_vectors()
        if unit is None:
            scores = self.score_similar(item)
            if scores is None:
                return None
            own = np.array(scores, dtype=np.float32)
            return finite_top(blocked_scores(own, np.array([item]), item_mask), k)
        excluded = np.array([item])
        if use_index and self.item_index is not None:
            found = self._search_vectors(self.item_index, unit, unit[item], k, excluded, item_mask)
            if found is not None:
                return found
        return finite_top(blocked_scores(unit @ unit[item], excluded, item_mask), k)

    def _search(
        self,
        index: ItemVectorStore,
        user: int,
        k: int,
        excluded: np.ndarray,
        item_mask: np.ndarray | None,
    ) -> Ranked | None:
        vectors = self.item_vectors()
        query = self.user_vectors(np.array([user]))
        if vectors is None or query is None:
            return None
        return self._search_vectors(index, vectors, query[0], k, excluded, item_mask)

    @staticmethod
    def _search_vectors(
        index: ItemVectorStore,
        vectors: np.ndarray,
        query: np.ndarray,
        k: int,
        excluded: np.ndarray,
        item_mask: np.ndarray | None,
    ) -> Ranked | None:
        """The index's candidates with exact scores, so scores equal the exact path's; with a
        mask the index over-fetches, then the eligible items are scored exactly
        (models/retrieval.py), so k items come back whenever k are eligible."""
        items, scores = search_vectors(index, vectors, query, k, excluded, item_mask)
        return Ranked(items, scores)

    # ----- persistence -------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that, with the params, fully restore the model (saved without pickle)."""
        self._require_fitted()
        return {
            "user_ids": self.user_map.ids,
            "item_ids": self.item_map.ids,
            "ui_indptr": self.user_items.indptr,
            "ui_indices": self.user_items.indices,
            "ui_data": self.user_items.data,
            "item_popularity": self.item_popularity,
            "history_indptr": self.history_indptr,
            "history_items": self.history_items,
            "history_weights": self.history_weights,
            "history_ts": self.history_ts,
            **self._model_state(),
        }

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_map = IdMap(arrays["user_ids"])
        self.item_map = IdMap(arrays["item_ids"])
        self.user_items = sp.csr_matrix(
            (arrays["ui_data"], arrays["ui_indices"], arrays["ui_indptr"]),
            shape=(len(self.user_map), len(self.item_map)),
        )
        self.item_popularity = arrays["item_popularity"]
        self.history_indptr = arrays["history_indptr"]
        self.history_items = arrays["history_items"]
        self.history_weights = arrays["history_weights"]
        self.history_ts = arrays["history_ts"]
        self._load_model_state(arrays)
        self._unit_cache = None

    @abstractmethod
    def _model_state(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load_model_state(self, arrays: dict[str, np.ndarray]) -> None: ...
