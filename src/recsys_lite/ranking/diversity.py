"""Re-ranking for variety: maximal marginal relevance (Carbonell & Goldstein, 1998) and a cap
per category, and the intra-list diversity of what is served.

MMR picks, one at a time, the candidate maximising ``lam * relevance - (1 - lam) * max
similarity to the items already picked``. Relevance is the model's score rescaled to [0, 1]
within the candidate pool (models score on very different scales; similarity is a cosine), so
one ``lam`` means the same trade-off for every model. ``lam = 1`` is the model's own order.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

kernel: ModuleType | None
try:
    from recsys_lite.ranking import _mmr as kernel
except ImportError:  # installed without a C compiler: the numpy loop below answers
    kernel = None


def _rescaled(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    low, high = float(scores.min()), float(scores.max())
    if high - low <= 0:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def diversify(
    candidates: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray | None,
    lam: float,
    max_per_category: int | None,
    k: int,
    categories: np.ndarray | None = None,
    *,
    use_kernel: bool = True,
) -> np.ndarray:
    """Positions into ``candidates`` (best first by relevance) of the k items to show, in
    the order to show them.

    ``vectors`` are unit item vectors aligned with ``candidates`` (None: no similarity, only
    the category cap applies); ``categories`` the candidates' categories (items without one
    are never capped). Fewer than k come back only when the cap leaves fewer.
    """
    n = len(candidates)
    k = min(k, n)
    use_mmr = vectors is not None and lam < 1.0 and n > 1
    capped = max_per_category is not None and categories is not None
    if use_mmr and not capped and use_kernel and kernel is not None:
        picks = np.empty(k, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        scores = np.asarray(scores)
        if scores.dtype != np.float32:
            scores = scores.astype(np.float64, copy=False)
        kernel.mmr(np.ascontiguousarray(scores), vectors, lam, picks)
        return picks
    relevance = _rescaled(scores) if n else np.zeros(0)
    # the similarity term already weighted by (1 - lam), in float64: with spread > 0 the
    # weighting commutes exactly with the running maximum, so each pick costs three small
    # array operations (a subtraction, an argmax, a maximum) and picks what the unweighted
    # formula picks
    spread = 1.0 - lam
    weighted = (
        spread * np.asarray(vectors @ vectors.T, dtype=np.float64)
        if use_mmr and vectors is not None
        else None
    )
    # (1 - lam) times the largest similarity of each candidate to anything picked so far
    closest = np.zeros(n)
    value = relevance.copy()  # without similarity, the order of relevance itself
    relevance *= lam
    per_category: dict[object, int] = {}
    chosen: list[int] = []
    while len(chosen) < k:
        if weighted is not None:
            np.subtract(relevance, closest, out=value)
        picked = int(value.argmax())
        if capped and categories is not None:
            # skip items of full categories; without a cap one argmax per pick suffices
            while np.isfinite(value[picked]):
                category = categories[picked]
                if category is None or per_category.get(category, 0) < max_per_category:  # type: ignore[operator]
                    break
                relevance[picked] = value[picked] = -np.inf  # out of the later rounds too
                picked = int(value.argmax())
            if not np.isfinite(value[picked]):
                break
            category = categories[picked]
            if category is not None:
                per_category[category] = per_category.get(category, 0) + 1
        chosen.append(picked)
        relevance[picked] = value[picked] = -np.inf  # shown: out of the later rounds
        if weighted is not None:
            np.maximum(closest, weighted[picked], out=closest)
    return np.array(chosen, dtype=np.int64)


def intra_list_diversity(
    vectors: np.ndarray | None, categories: np.ndarray | None
) -> tuple[float | None, float | None]:
    """(share of distinct categories among the items that have one, mean pairwise cosine
    distance); None where the list has too few items or no vectors to say."""
    share = None
    if categories is not None:
        known = [c for c in categories.tolist() if c is not None]
        if known:
            share = len(set(known)) / len(known)
    distance = None
    if vectors is not None and len(vectors) > 1:
        n = len(vectors)
        similarity = vectors @ vectors.T
        mean_similarity = (float(similarity.sum()) - float(np.trace(similarity))) / (n * (n - 1))
        distance = 1.0 - mean_similarity
    return share, distance


def content_vectors(categories: np.ndarray, brands: np.ndarray) -> np.ndarray:
    """Unit vectors whose inner product is half for a shared category plus half for a shared
    brand: the similarity MMR uses for models without item vectors of their own."""
    n = len(categories)
    columns: dict[tuple[str, object], int] = {}
    rows, cols, values = [], [], []
    for position in range(n):
        for field, value in (("category", categories[position]), ("brand", brands[position])):
            if value is None:
                continue
            column = columns.setdefault((field, value), len(columns))
            rows.append(position)
            cols.append(column)
            values.append(np.sqrt(0.5))
    out = np.zeros((n, max(len(columns), 1)), dtype=np.float32)
    out[rows, cols] = values
    return out
