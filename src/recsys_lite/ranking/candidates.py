"""Candidate retrieval for a second-stage ranker: the union of several sources' top N.

Each source gives a full score vector over the catalog (a trained model, trending items, items
bought together with the user's recent ones). The merged set keeps, per source, every
candidate's rank (1 = best; N + 1 where the source did not retrieve it) and score (NaN there),
which the ranker reads as features: agreement between sources is much of what it learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_lite.models.base import top_k


@dataclass(frozen=True)
class Candidates:
    items: np.ndarray  # internal item indices, in no particular order
    ranks: np.ndarray  # (items, sources) float32
    scores: np.ndarray  # (items, sources) float32
    depth: int  # N: each source's contribution


def merge(source_scores: list[np.ndarray], n: int, excluded: np.ndarray | None) -> Candidates:
    """The union of each source's ``n`` best items; ``excluded`` items (and -inf) never enter."""
    tops = []
    for scores in source_scores:
        scores = np.array(scores, dtype=np.float32, copy=True)
        if excluded is not None and len(excluded):
            scores[excluded] = -np.inf
        best = top_k(scores, n)[0]
        tops.append(best[np.isfinite(scores[best])])
    items = np.unique(np.concatenate(tops)) if tops else np.zeros(0, dtype=np.int64)
    ranks = np.full((len(items), len(tops)), n + 1, dtype=np.float32)
    values = np.full((len(items), len(tops)), np.nan, dtype=np.float32)
    for source, (best, scores) in enumerate(zip(tops, source_scores, strict=True)):
        rows = np.searchsorted(items, best)
        ranks[rows, source] = np.arange(1, len(best) + 1)
        values[rows, source] = scores[best]
    return Candidates(items, ranks, values, n)


def recall_by_source(
    candidates: list[Candidates], targets: list[np.ndarray], names: list[str]
) -> dict[str, float]:
    """Share of target items each source retrieved, and the merged set (micro-averaged over
    users' target items): how much of what users went on to choose the ranker can see."""
    found = np.zeros(len(names) + 1)
    total = 0
    for found_set, wanted in zip(candidates, targets, strict=True):
        if not len(wanted):
            continue
        total += len(wanted)
        hit = np.isin(found_set.items, wanted)
        found[-1] += hit.sum()
        found[:-1] += (found_set.ranks[hit] <= found_set.depth).sum(axis=0)
    keys = [*names, "merged"]
    return {
        key: float(value / total) if total else 0.0 for key, value in zip(keys, found, strict=True)
    }


class CoVisitation:
    """'Bought together with your recent items': for recent items R, an item's score is the
    number of users who had both it and an item of R (counted per such pair), damped by the
    square root of its popularity so best-sellers do not win by size alone."""

    def __init__(self, user_items: sp.csr_matrix) -> None:
        binary = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        self._by_user = binary  # users x items
        self._by_item = binary.T.tocsr()  # items x users
        popularity = np.asarray(binary.sum(axis=0), dtype=np.float32).ravel()
        self._damping = 1.0 / np.sqrt(popularity + 1.0)

    def scores(self, recent: np.ndarray) -> np.ndarray:
        n_users, n_items = self._by_user.shape
        recent = recent[(recent >= 0) & (recent < n_items)]
        if not len(recent):
            return np.zeros(n_items, dtype=np.float32)
        # Only the users who had a recent item contribute, so their rows are gathered instead
        # of a product over every user when they are few.
        # Every sum is of small integers, exact in float32 and float64 alike, so the result is
        # the same as the two sparse products (a repeated recent item counts each time).
        mentions = self._by_item.indices[_row_entries(self._by_item.indptr, recent)]
        users = np.bincount(mentions, minlength=n_users)
        who = np.flatnonzero(users)
        lengths = self._by_user.indptr[who + 1] - self._by_user.indptr[who]
        # gathering costs about ten times more per entry than the product does per nonzero
        # (measured on a 100k-item shop): past a tenth of the matrix, one product is cheaper
        if lengths.sum() > self._by_user.nnz // 10:
            together = self._by_item @ users.astype(np.float32)
        else:
            entries = _row_entries(self._by_user.indptr, who)
            weights = np.repeat(users[who], lengths)
            together = np.bincount(self._by_user.indices[entries], weights, minlength=n_items)
        damped: np.ndarray = np.asarray(together, dtype=np.float32) * self._damping
        return damped


def _row_entries(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in a CSR matrix's data/indices of every entry of ``rows`` (repeats repeated),
    without a Python loop over the rows."""
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths  # where each row begins in the output
    return np.repeat(starts - offsets, lengths) + np.arange(total)
