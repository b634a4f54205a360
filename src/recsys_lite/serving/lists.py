"""The lists /recommend and /similar-items answer: retrieval inside the request's filter, then
diversity, then explanations, each only when asked for (the plain request stays the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_lite.errors import NotFoundError
from recsys_lite.models.types import Ranked
from recsys_lite.ranking.diversity import content_vectors, diversify, intra_list_diversity
from recsys_lite.ranking.explain import UserItems, reason_fields
from recsys_lite.serving.runtime import ServingState
from recsys_lite.serving.schemas import ListQuery, RecommendQuery, SimilarItemsQuery

# Diversifying picks k from a larger pool of the most relevant eligible items.
POOL_FACTOR = 3
POOL_EXTRA = 20
POOL_MAX = 300
POPULAR = b',"reason":"popular"'


@dataclass(frozen=True)
class Served:
    source: str
    ranked: Ranked
    extras: list[bytes] | None = None
    fallback: str | None = None  # why the popular fallback answered, for the metrics


def pool_size(query: ListQuery) -> int:
    k = query.k
    return min(max(POOL_FACTOR * k, k + POOL_EXTRA), POOL_MAX) if query.diversifies else k


def item_vectors(state: ServingState, items: np.ndarray) -> np.ndarray:
    """Unit vectors of these items for similarity: the model's, or category and brand."""
    unit = state.model._unit_vectors()
    if unit is not None:
        return np.asarray(unit[items])
    catalog = state.catalog
    return content_vectors(catalog.field("category")[items], catalog.field("brand")[items])


def rerank(state: ServingState, ranked: Ranked, query: ListQuery) -> Ranked:
    if not query.diversifies or len(ranked.items) <= 1:
        return Ranked(ranked.items[: query.k], ranked.scores[: query.k])
    capped = query.max_per_category is not None
    categories = state.catalog.field("category")[ranked.items] if capped else None
    vectors = item_vectors(state, ranked.items) if query.diversity_lambda < 1.0 else None
    order = diversify(
        ranked.items, ranked.scores, vectors, query.diversity_lambda, query.max_per_category,
        query.k, categories,
    )  # fmt: skip
    return Ranked(ranked.items[order], ranked.scores[order])


def diversity_of(state: ServingState, items: np.ndarray) -> tuple[float | None, float | None]:
    if len(items) < 2:
        return None, None
    return intra_list_diversity(item_vectors(state, items), state.catalog.field("category")[items])


def recommend(state: ServingState, query: RecommendQuery) -> Served:
    user_id, exclude_seen = query.user_id, query.exclude_seen
    model, online = state.model, state.online
    mask = state.catalog.eligible(query.item_filter())
    n = pool_size(query)
    ranked: Ranked | None = None
    source = model.name
    excluded = None
    user: UserItems | None = None
    folded = online.recent_history(user_id)  # one read, wherever the state lives
    if folded is not None:
        # events since training: fold the user in from stored + new history
        history, excluded = folded
        ranked = model.recommend_history(
            history, n, exclude=excluded if exclude_seen else None, item_mask=mask,
            use_index=query.use_faiss,
        )  # fmt: skip
        if ranked is not None and query.explain:
            user = UserItems.from_history(history)
    if ranked is None and model.knows_user(user_id):
        ranked = model.recommend(
            user_id, n, exclude_seen=exclude_seen, item_mask=mask, use_index=query.use_faiss,
            exclude=excluded if exclude_seen else None,
        )  # fmt: skip
        if query.explain:
            user = UserItems.from_model(model, model.user_map.index(user_id))
    fallback = None
    if ranked is None:
        ranked = online.popular(n, item_mask=mask, exclude=excluded if exclude_seen else None)
        source, fallback = "popular", "unknown_user"
    ranked = rerank(state, ranked, query)
    extras = None
    if query.explain:
        extras = (
            [POPULAR] * len(ranked.items)
            if user is None or source == "popular"
            else explanation_fields(state, user, ranked.items, query.explain_top_k)
        )
    return Served(source, ranked, extras, fallback)


def explanation_fields(
    state: ServingState, user: UserItems, items: np.ndarray, top_k: int
) -> list[bytes]:
    catalog, model = state.catalog, state.model

    def similarity_of(targets: np.ndarray, past: np.ndarray) -> np.ndarray:
        # one call for both sides: content vectors are built per call, in one space
        vectors = item_vectors(state, np.concatenate([targets, past]))
        return np.asarray(vectors[: len(targets)] @ vectors[len(targets) :].T)

    return reason_fields(
        model, user, items, top_k, similarity_of, catalog.because_fragments,
        catalog.because_fragment,
    )  # fmt: skip


def similar_items(state: ServingState, query: SimilarItemsQuery) -> Served:
    item_id = query.item_id
    model = state.model
    if item_id not in model.item_map:
        raise NotFoundError(f"unknown item {item_id!r}")
    mask = state.catalog.eligible(query.item_filter())
    n = pool_size(query)
    ranked = model.similar_items(item_id, n, item_mask=mask, use_index=query.use_faiss)
    source, fallback = model.name, None
    if ranked is None:
        ranked = state.online.popular(
            n, item_mask=mask, exclude=np.array([model.item_map.index(item_id)])
        )
        source, fallback = "popular", "no_item_vectors"
    return Served(source, rerank(state, ranked, query), None, fallback)
