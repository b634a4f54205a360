"""Top-k selection past exclusions and an eligibility mask: of a row of scores over the
catalog, of a model's short list of scored items, and through a vector index, which
over-fetches and refills, and when it cannot fill k an exact pass over the eligible items does.

A filter that leaves a few percent of the catalog would otherwise either answer short (the
index's best candidates are mostly filtered out) or score the whole catalog; the exact pass
touches only the eligible rows, so a 1% filter on 100k items costs a 1k-row product.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from recsys_lite.models.types import Ranked
from recsys_lite.models.vector_store import ItemVectorStore

kernel: ModuleType | None
try:
    from recsys_lite.models import _topk as kernel
except ImportError:  # installed without a C compiler: the numpy selection below answers
    kernel = None

NEG_INF = np.float32(-np.inf)

# Below this many eligible items an exact pass is cheaper than any index search that could
# find k of them (gathering a few thousand rows costs less than an HNSW search for as many).
EXACT_ELIGIBLE_MAX = 8_192
# Over-fetch rounds: the number of candidates asked for grows by this factor each round, up to
# MAX_FETCH, before the exact pass takes over.
GROWTH = 4
MAX_FETCH = 2_048
# Up to this many candidates a plain loop filters them faster than array operations (the
# served top 10); past it (a ranker's top 200) one pass of array operations is faster.
LOOP_MAX = 64


def outside(items: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Which of ``items`` are not in ``excluded``: for the few hundred items and few dozen
    exclusions of a request, binary search in the sorted exclusions (np.isin costs several
    times more at these sizes)."""
    if not len(excluded):
        return np.ones(len(items), dtype=bool)
    ordered = np.sort(excluded)
    at = np.minimum(np.searchsorted(ordered, items), len(ordered) - 1)
    found: np.ndarray = ordered[at] != items
    return found


def _index_round(
    index: ItemVectorStore,
    vectors: np.ndarray,
    query: np.ndarray,
    want: int,
    k: int,
    blocked: set[int],
    item_mask: np.ndarray | None,
    excluded: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    ids, exact_scores = index.search(query, want)
    candidates = ids[0]
    keep: list[int] | np.ndarray
    if len(candidates) > LOOP_MAX:
        ok = candidates >= 0
        if len(excluded):
            ok &= outside(candidates, excluded)
        if item_mask is not None:
            ok[ok] = item_mask[candidates[ok]]
        keep = np.flatnonzero(ok)
    else:
        # Plain Python over the few dozen candidates: each numpy call on arrays this small
        # costs more than the whole loop, and this runs on every request.
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


@dataclass
class _Eligible:
    """What a catalog-cached mask (read-only, one per filter value) allows: its item indices
    and, for the vectors last searched with it, their rows. Kept while the mask lives, so the
    memory is bounded by the catalog's cache: each item is in one category and one brand, so
    at most two extra copies of the vectors."""

    mask: weakref.ref[np.ndarray]
    indices: np.ndarray
    vectors: weakref.ref[np.ndarray] | None = None
    rows: np.ndarray | None = None


_ELIGIBLE: dict[int, _Eligible] = {}


def _eligible(mask: np.ndarray) -> _Eligible:
    if mask.flags.writeable:  # built for this request: nothing to reuse
        return _Eligible(weakref.ref(mask), np.flatnonzero(mask))
    key = id(mask)
    held = _ELIGIBLE.get(key)
    if held is None or held.mask() is not mask:
        held = _Eligible(
            weakref.ref(mask, lambda _: _ELIGIBLE.pop(key, None)), np.flatnonzero(mask)
        )
        if not mask.flags.writeable:
            _ELIGIBLE[key] = held
    return held


def _rows(eligible: _Eligible, vectors: np.ndarray) -> np.ndarray:
    """The eligible items' vectors: gathering a few thousand rows per request cost more than
    the product with them."""
    known = eligible.vectors is not None and eligible.vectors() is vectors
    if known and eligible.rows is not None:
        return eligible.rows
    rows = np.ascontiguousarray(vectors[eligible.indices])
    eligible.vectors, eligible.rows = weakref.ref(vectors), rows
    return rows


def exact_eligible(
    rows: np.ndarray,
    query: np.ndarray,
    k: int,
    indices: np.ndarray,
    excluded: np.ndarray,
    *,
    use_kernel: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the items at ``indices`` (sorted; their vectors are ``rows``) that are not
    excluded, by exact inner product, best first (ties: the earlier item)."""
    scores = (rows @ query).astype(np.float32)
    if use_kernel and kernel is not None:
        positions = np.empty(min(k, len(indices)), dtype=np.int64)
        found = kernel.top_positions(  # sorted, not unique: a few times cheaper, same answer
            scores, indices.astype(np.int64, copy=False), np.sort(excluded.astype(np.int64)),
            positions,
        )  # fmt: skip
        order = positions[:found]
        return indices[order], scores[order]
    excluded = np.unique(excluded)
    keep = np.isfinite(scores)  # +inf too: an item scored inf cannot be ranked
    if len(excluded) and len(indices):
        at = np.minimum(np.searchsorted(indices, excluded), len(indices) - 1)
        keep[at[indices[at] == excluded]] = False
    positions = np.flatnonzero(keep)
    kept = scores[positions]
    if 0 < k < len(positions):  # only what ties with the k-th best score or beats it is sorted
        kth = kept[np.argpartition(-kept, k - 1)[k - 1]]
        chosen = np.flatnonzero(kept >= kth)
        positions, kept = positions[chosen], kept[chosen]
    order = positions[np.lexsort((positions, -kept))[:k]]
    return indices[order], scores[order]


def search_vectors(
    index: ItemVectorStore,
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
            index, vectors, query, k + len(blocked), min(k, n_items - len(blocked)), blocked,
            None, excluded,
        )  # fmt: skip
        if found is not None:
            return found
        return exact_eligible(vectors, query, k, np.arange(n_items), excluded)
    # items added after the catalog's mask was built are not in it (a shorter mask)
    mask = item_mask if len(item_mask) == n_items else item_mask[:n_items]
    eligible = _eligible(mask)
    indices = eligible.indices
    if len(indices) > EXACT_ELIGIBLE_MAX:
        # expect about k / density candidates to hold k eligible ones; ask for twice that
        want = len(blocked) + math.ceil(2 * k * n_items / len(indices))
        while want <= MAX_FETCH:
            found = _index_round(index, vectors, query, want, k, blocked, item_mask, excluded)
            if found is not None:
                return found
            want *= GROWTH
    return exact_eligible(_rows(eligible, vectors), query, k, indices, excluded)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best scores of each row, best first; -inf entries never win."""
    scores = np.atleast_2d(scores)
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def finite_top(scores: np.ndarray, k: int) -> Ranked:
    """The k best of one row of scores over the catalog, without the -inf (blocked) items."""
    best = top_k(scores, k)[0]
    best_scores = scores[best]
    keep = np.isfinite(best_scores)
    return Ranked(best[keep], best_scores[keep])


def blocked_scores(
    scores: np.ndarray, excluded: np.ndarray | None, item_mask: np.ndarray | None
) -> np.ndarray:
    """``scores`` with the excluded and masked-out items at -inf, set in place."""
    if excluded is not None and len(excluded):
        scores[excluded] = NEG_INF
    if item_mask is not None:
        scores[~item_mask] = NEG_INF
    return scores


def listed_top(
    listed: Ranked, k: int, excluded: np.ndarray | None, item_mask: np.ndarray | None
) -> Ranked:
    """``finite_top`` of a listed ranking: the same filters on the listed items only (ties:
    lower index first)."""
    items, scores = listed.items, listed.scores
    keep = np.isfinite(scores)
    if excluded is not None and len(excluded):
        keep &= outside(items, excluded)
    if item_mask is not None:
        inside = items < len(item_mask)
        keep &= inside
        keep[inside] &= item_mask[items[inside]]
    items, scores = items[keep], scores[keep]
    if 0 < k < len(items):  # only what ties with the k-th best score or beats it is sorted
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        chosen = np.flatnonzero(scores >= kth)
        items, scores = items[chosen], scores[chosen]
    order = np.lexsort((items, -scores))[:k]
    return Ranked(items[order], scores[order])
