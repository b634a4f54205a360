"""One search: lexical and semantic rankings fused by reciprocal rank fusion, then, for a known
shopper, nudged towards items near what they have had."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import orjson

from recsys_lite.ranking.filters import NO_FILTER, ItemFilter

if TYPE_CHECKING:  # importing bm25s and torch takes seconds; the API loads them in a thread
    from recsys_lite.search.embedder import Encoder
    from recsys_lite.search.index import TextIndex

Mode = Literal["hybrid", "lexical", "semantic"]
MODES: tuple[Mode, ...] = ("hybrid", "lexical", "semantic")
# The usual constant of reciprocal rank fusion (Cormack et al. 2009): a list's first places
# count, but no single list decides alone.
RRF_K = 60
# A shopper's taste is one list among the fused ones, weighted lower than the query's own: it
# reorders what matches the query and never brings in what does not.
TASTE_WEIGHT = 0.5
RESPONSE_FIELDS = ("title", "category", "brand", "price", "img_url")


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int = 10
    mode: Mode = "hybrid"
    # the items a hit may be, as for /recommend; unavailable items never are
    item_filter: ItemFilter = NO_FILTER
    # The shopper's past items (external ids, newest last), and their weights
    taste_items: Sequence[str] = ()
    taste_weights: Sequence[float] = ()


@dataclass(frozen=True)
class Hit:
    item_id: str
    score: float
    lexical_rank: int | None  # 1-based place in each list, None when it was not in it
    semantic_rank: int | None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    personalised: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def fuse(rankings: Sequence[tuple[np.ndarray, float]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: each item scores the sum of weight / (k + rank) over the lists
    that hold it."""
    scores: dict[int, float] = {}
    for positions, weight in rankings:
        for rank, position in enumerate(positions.tolist(), start=1):
            scores[position] = scores.get(position, 0.0) + weight / (k + rank)
    return scores


def taste_vector(
    index: TextIndex, items: Sequence[str], weights: Sequence[float]
) -> np.ndarray | None:
    """The weighted mean direction of the shopper's past items in text space."""
    positions = [index.positions.get(item) for item in items]
    known = [n for n, position in enumerate(positions) if position is not None]
    if not known:
        return None
    rows = np.array([positions[n] for n in known], dtype=np.int64)
    given = np.asarray(weights, dtype=np.float32)
    w = given[known] if len(given) == len(items) else np.ones(len(known), dtype=np.float32)
    vector = (index.vectors[rows] * np.maximum(w, 0.0)[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None


def run(index: TextIndex, encoder: Encoder | None, request: SearchRequest) -> SearchResult:
    """The k best items for the request; ``encoder`` may be None only in lexical mode."""
    # both rankings search inside the eligible items, so a filter never shortens an answer
    # that k eligible matches could fill
    allowed = index.eligible(request.item_filter)
    depth = max(50, 5 * request.k)  # how deep each list is read before fusing
    lexical = semantic = np.zeros(0, dtype=np.int64)
    if request.mode != "semantic":
        lexical = index.lexical(request.query, depth, allowed)
    if request.mode != "lexical":
        if encoder is None:
            raise ValueError("semantic search needs an encoder")
        semantic = index.semantic(encoder.encode_query(request.query), depth, allowed)
    scores = fuse([(lexical, 1.0), (semantic, 1.0)])
    personalised = False
    taste = taste_vector(index, request.taste_items, request.taste_weights)
    if taste is not None and scores:
        candidates = np.fromiter(scores, dtype=np.int64, count=len(scores))
        near = candidates[np.argsort(-(index.vectors[candidates] @ taste), kind="stable")]
        for position, extra in fuse([(near, TASTE_WEIGHT)]).items():
            scores[position] += extra
        personalised = True
    lexical_rank = {p: r for r, p in enumerate(lexical.tolist(), start=1)}
    semantic_rank = {p: r for r, p in enumerate(semantic.tolist(), start=1)}
    # ties (same ranks in both lists) go to the lexical side: an exact word beats a near meaning
    order = sorted(
        scores,
        key=lambda p: (-scores[p], lexical_rank.get(p, depth + 1), semantic_rank.get(p, depth + 1)),
    )[: request.k]
    hits = [Hit(index.ids[p], scores[p], lexical_rank.get(p), semantic_rank.get(p)) for p in order]
    return SearchResult(hits, personalised)


def answer(
    request: SearchRequest,
    result: SearchResult,
    row_of: Callable[[str], dict[str, Any] | None],
    user_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON answer the API and the command line both give."""
    results = []
    for hit in result.hits:
        row = row_of(hit.item_id) or {}
        results.append(
            {"item_id": hit.item_id, "score": round(hit.score, 6)}
            | {name: row.get(name) for name in RESPONSE_FIELDS}
            | {"lexical_rank": hit.lexical_rank, "semantic_rank": hit.semantic_rank}
        )
    return orjson.dumps(
        {
            "query": request.query, "mode": request.mode, "user_id": user_id,
            "personalised": result.personalised, **(extra or {}), "results": results,
        }
    )  # fmt: skip
