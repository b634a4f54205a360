"""Top-k inside an eligibility mask: the index over-fetches and refills, and when it cannot
fill k an exact pass over the eligible items does.

A filter that leaves a few percent of the catalog would otherwise either answer short (the
index's best candidates are mostly filtered out) or score the whole catalog; the exact pass
touches only the eligible rows, so a 1% filter on 100k items costs a 1k-row product.
"""

from __future__ import annotations

import math

import numpy as np

from recsys_lite.models.index import VectorIndex

# Below this many eligible items an exact pass is cheaper than any index search that could
# find k of them (gathering a few thousand rows costs less than an HNSW search for as many).
EXACT_ELIGIBLE_MAX = 4_096
# Over-fetch rounds: the number of candidates asked for grows by this factor each round, up to
# MAX_FETCH, before the exact pass takes over.
GROWTH = 4
MAX_FETCH = 2_048


def _index_round(
    index: VectorIndex,
    vectors: np.ndarray,
    query: np.ndarray,
    want: int,
    k: int,
    blocked: set[int],
    item_mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    ids, exact_scores = index.search(query, want)
    candidates = ids[0]
    # Plain Python over the few dozen candidates: each numpy call on arrays this small costs
    # more than the whole loop, and this runs on every request.
    keep = [
        n
        for n, item in enumerate(candidates.tolist())
        if item >= 0 and item not in blocked and (item_mask is None or item_mask[item])
    ]
    if len(keep) < k:
        return None
    if exact_scores is not None:  # already best first
        best = keep[:k]
        return candidates[best], exact_scores[0][best]
    found = candidates[keep]
    scores = vectors[found] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return found[order], scores[order].astype(np.float32)


def exact_eligible(
    vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the allowed items by exact inner product, best first."""
    eligible = np.flatnonzero(allowed)
    scores = (vectors[eligible] @ query).astype(np.float32)
    everything = np.arange(len(eligible))
    part = np.argpartition(-scores, k - 1)[:k] if len(eligible) > k else everything
    order = part[np.argsort(-scores[part], kind="stable")]
    return eligible[order], scores[order]


def search_vectors(
    index: VectorIndex,
    vectors: np.ndarray,
    query: np.ndarray,
    k: int,
    excluded: np.ndarray,
    item_mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best items by inner product that are neither excluded nor masked out, best
    first, with exact scores (so they equal the exact path's)."""
    n_items = len(vectors)
    blocked = set(excluded.tolist())
    if item_mask is None:
        # unfiltered: one round of k plus what the user already has, as fast as before
        found = _index_round(
            index, vectors, query, k + len(blocked), min(k, n_items - len(blocked)), blocked, None
        )
        if found is not None:
            return found
        allowed = np.ones(n_items, dtype=bool)
    else:
        allowed = np.array(item_mask[:n_items], dtype=bool, copy=True)
        n_allowed = int(np.count_nonzero(allowed))
        if n_allowed > EXACT_ELIGIBLE_MAX:
            # expect about k / density candidates to hold k eligible ones; ask for twice that
            want = len(blocked) + math.ceil(2 * k * n_items / n_allowed)
            while want <= MAX_FETCH:
                found = _index_round(index, vectors, query, want, k, blocked, item_mask)
                if found is not None:
                    return found
                want *= GROWTH
    if len(excluded):
        allowed[excluded[excluded < n_items]] = False
    return exact_eligible(vectors, query, k, allowed)
