"""The ranker's first stage: its sources as fitted on some events, and each source's top N for
a user (ranking/candidates.py merges them, ranking/ranker.py ranks the merged set).

Every source gives its top N without a vector over the catalog where it can: a retriever with
a vector index is searched through it, trending is read from an order taken once, and
bought-together sums the co-visitation table's rows of the user's recent items. A ranker that
lost on validation serves one source's full ranking instead (``dense_scores``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recsys_lite.data.idmap import IdMap
from recsys_lite.models.base import Recommender
from recsys_lite.models.index import VectorIndex
from recsys_lite.models.retrieval import outside, search_vectors
from recsys_lite.models.types import History
from recsys_lite.ranking.candidates import (
    EMPTY_TOP,
    CoVisitation,
    SourceTop,
    best_listed,
    best_of,
)


@dataclass
class FirstStage:
    """The first stage as fitted on some events, in the ranker's item space."""

    retrievers: list[Recommender]
    positions: list[np.ndarray]  # ranker item index of each retriever item (-1: unknown)
    covisit: CoVisitation
    trending: np.ndarray
    item_features: np.ndarray  # (items, item features)
    instant: int
    # per retriever, computed once rather than per request: whether its items are the
    # ranker's in the same order (its scores then need no mapping), and each ranker item's
    # index in its space (-1: unknown), for folding a history in
    same_items: list[bool] = field(init=False)
    own_index: list[np.ndarray] = field(init=False)
    mapped: list[np.ndarray] = field(init=False)  # which of a retriever's items the ranker has
    # trending is the same for every shopper: its order (ties: lower index first) is taken
    # once, and a request reads its head past the items it excludes
    trending_order: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n_items = len(self.item_features)
        self.trending_order = np.lexsort((np.arange(len(self.trending)), -self.trending))
        self.same_items = [
            len(p) == n_items and bool(np.array_equal(p, np.arange(n_items)))
            for p in self.positions
        ]
        self.mapped = [positions >= 0 for positions in self.positions]
        self.own_index = []
        for positions in self.positions:
            own = np.full(n_items, -1, dtype=np.int64)
            mapped = np.flatnonzero(positions >= 0)
            own[positions[mapped]] = mapped
            self.own_index.append(own)

    @property
    def n_items(self) -> int:
        return len(self.item_features)

    def tops(
        self,
        user_ids: np.ndarray | None,
        histories: list[History],
        excluded: list[np.ndarray],
        n: int,
        recent: int,
    ) -> list[list[SourceTop]]:
        """Per user, each source's top ``n`` outside ``excluded`` (unique item indices);
        users without ids (None) are folded in from their histories; bought-together reads
        the last ``recent`` items of each history."""
        per_source = [
            self.retriever_tops(r, user_ids, histories, excluded, n)
            for r in range(len(self.retrievers))
        ]
        per_source.append([self.trending_top(n, seen) for seen in excluded])
        per_source.append(
            [
                best_listed(*self.covisit.together(history.items[-recent:]), n, seen)
                for history, seen in zip(histories, excluded, strict=True)
            ]
        )
        return [list(user) for user in zip(*per_source, strict=True)]

    def trending_top(self, n: int, excluded: np.ndarray) -> SourceTop:
        """Trending's top ``n`` outside ``excluded`` (unique items): at most that many of
        its head are left out, so the head that long holds the ``n``."""
        head = self.trending_order[: n + len(excluded)]
        if len(excluded):
            head = head[outside(head, excluded)]
        head = head[:n]
        return SourceTop(head.astype(np.int64), self.trending[head].astype(np.float32))

    def retriever_tops(
        self,
        r: int,
        user_ids: np.ndarray | None,
        histories: list[History],
        excluded: list[np.ndarray],
        n: int,
    ) -> list[SourceTop]:
        model, positions = self.retrievers[r], self.positions[r]
        own = (
            np.full(len(histories), -1, dtype=np.int64)
            if user_ids is None
            else indices(model.user_map, user_ids)
        )
        out = [EMPTY_TOP] * len(histories)
        known = np.flatnonzero(own >= 0)
        index = searchable(model)
        if index is not None and len(known):
            for row in known.tolist():
                out[row] = self.searched(r, index, int(own[row]), excluded[row], n)
            known = known[:0]
        mapped = self.mapped[r]

        def in_ranker_space(scores: np.ndarray) -> np.ndarray:
            if self.same_items[r]:
                return scores
            full = np.full(self.n_items, -np.inf, dtype=np.float32)
            full[positions[mapped]] = scores[mapped]
            return full

        if len(known):
            scores = np.asarray(model.score_users(own[known]), dtype=np.float32)
            for row, user_scores in zip(known.tolist(), scores, strict=True):
                out[row] = best_of(in_ranker_space(user_scores), n, excluded[row])
        for row in np.flatnonzero(own < 0).tolist():
            if index is not None:  # a fold-in that is a vector is searched like a user's
                own_history = self._own_history(r, histories[row])
                query = None if own_history is None else model.history_vector(own_history)
                if query is not None:
                    out[row] = self._searched_vector(r, index, query, excluded[row], n)
                    continue
            folded = self._fold_in(r, histories[row])
            if folded is not None:
                folded = np.asarray(folded, dtype=np.float32)
                out[row] = best_of(in_ranker_space(folded), n, excluded[row])
        return out

    def searched(
        self, r: int, index: VectorIndex, user: int, excluded: np.ndarray, n: int
    ) -> SourceTop:
        """A known user's top ``n`` from a retriever's vector index, with exact inner
        products: approximate for HNSW, whose top N can miss some of the exact top N."""
        query = self.retrievers[r].user_vectors(np.array([user]))
        assert query is not None
        return self._searched_vector(r, index, query[0], excluded, n)

    def _searched_vector(
        self, r: int, index: VectorIndex, query: np.ndarray, excluded: np.ndarray, n: int
    ) -> SourceTop:
        vectors = self.retrievers[r].item_vectors()
        assert vectors is not None
        blocked = self.own_index[r][excluded]
        found, scores = search_vectors(index, vectors, query, n, blocked[blocked >= 0], None)
        items = self.positions[r][found]
        keep = items >= 0
        return best_listed(items[keep], scores[keep], n, None)

    def dense_scores(
        self, user_ids: np.ndarray | None, histories: list[History], recent: int
    ) -> list[np.ndarray]:
        """One (users, items) score matrix per source; users without ids (None) are folded
        in from their histories. What a ranker that lost on validation serves (one source's
        full ranking)."""
        n_items = self.n_items
        out = []
        for r, (model, positions) in enumerate(zip(self.retrievers, self.positions, strict=True)):
            own = (
                np.full(len(histories), -1, dtype=np.int64)
                if user_ids is None
                else indices(model.user_map, user_ids)
            )
            known = np.flatnonzero(own >= 0)
            if self.same_items[r] and len(known) == len(histories):
                out.append(np.asarray(model.score_users(own), dtype=np.float32))
                continue
            full = np.full((len(histories), n_items), -np.inf, dtype=np.float32)
            mapped = self.mapped[r]
            if len(known):
                scores = model.score_users(own[known])
                if self.same_items[r]:
                    full[known] = scores
                else:
                    full[np.ix_(known, positions[mapped])] = scores[:, mapped]
            for row in np.flatnonzero(own < 0):
                folded = self._fold_in(r, histories[row])
                if folded is not None:
                    full[row, positions[mapped]] = folded[mapped]
            out.append(full)
        out.append(np.broadcast_to(self.trending, (len(histories), n_items)))
        out.append(np.stack([self.covisit.scores(h.items[-recent:]) for h in histories]))
        return out

    def _own_history(self, r: int, history: History) -> History | None:
        """A history in a retriever's item space (None: it knows none of the items)."""
        own = self.own_index[r][history.items]
        keep = own >= 0
        if not keep.any():
            return None
        return History(own[keep], history.weights[keep], history.ts[keep])

    def _fold_in(self, r: int, history: History) -> np.ndarray | None:
        """A retriever's scores for a user it did not see, from their history in its space."""
        own_history = self._own_history(r, history)
        return None if own_history is None else self.retrievers[r].score_history(own_history)


def searchable(model: Recommender) -> VectorIndex | None:
    """A retriever's index, when searching it beats its scores over the catalog."""
    index = model.user_index
    if isinstance(index, VectorIndex) and index.kind != "flat":
        return index
    return None


def indices(ids: IdMap, values: np.ndarray) -> np.ndarray:
    """Indices of a few ids (-1: unknown) by the map's dictionary: an Arrow join builds a hash
    table of every id, which per request cost more than all the scoring."""
    found = (ids.get(value) for value in values.tolist())
    return np.array([-1 if n is None else n for n in found], dtype=np.int64)
