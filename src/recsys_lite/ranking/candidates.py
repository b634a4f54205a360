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

from recsys_lite.models.retrieval import outside


@dataclass(frozen=True)
class Candidates:
    items: np.ndarray  # internal item indices, in no particular order
    ranks: np.ndarray  # (items, sources) float32
    scores: np.ndarray  # (items, sources) float32
    depth: int  # N: each source's contribution


@dataclass(frozen=True)
class SourceTop:
    """One source's best items, best first, with their scores."""

    items: np.ndarray  # int64 internal item indices
    scores: np.ndarray  # float32


EMPTY_TOP = SourceTop(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def best_first(items: np.ndarray, scores: np.ndarray, n: int) -> SourceTop:
    """The ``n`` best of these (unique) items; equal scores go lower index first, so a source's
    top N is one set whether it is taken from a catalog-wide vector or from a short list."""
    if 0 < n < len(items):  # the N-th best score, then only what ties with it or beats it is sorted
        kth = scores[np.argpartition(-scores, n - 1)[n - 1]]
        chosen = np.flatnonzero(scores >= kth)
        items, scores = items[chosen], scores[chosen]
    order = np.lexsort((items, -scores))[:n]
    return SourceTop(items[order].astype(np.int64), scores[order].astype(np.float32))


def best_of(scores: np.ndarray, n: int, excluded: np.ndarray | None) -> SourceTop:
    """The ``n`` best finite scores of a vector over the catalog, ``excluded`` items left out."""
    scores = np.asarray(scores, dtype=np.float32)
    if excluded is not None and len(excluded):
        scores = scores.copy()
        scores[excluded] = -np.inf
    k = min(n, len(scores))
    if k <= 0:
        return EMPTY_TOP
    part = np.argpartition(-scores, k - 1)[:k]
    kth = scores[part].min()
    # every item tied with the N-th too, so the tie rule of best_first decides which stay
    chosen = np.flatnonzero(scores >= kth) if np.isfinite(kth) else part[np.isfinite(scores[part])]
    return best_first(chosen, scores[chosen], n)


def best_listed(
    items: np.ndarray, scores: np.ndarray, n: int, excluded: np.ndarray | None
) -> SourceTop:
    """The same as ``best_of`` for a source that scores only the (unique) ``items`` listed."""
    keep = np.isfinite(scores)
    if excluded is not None and len(excluded):
        keep &= outside(items, excluded)
    return best_first(items[keep], scores[keep], n)


def merge(source_scores: list[np.ndarray], n: int, excluded: np.ndarray | None) -> Candidates:
    """The union of each source's ``n`` best items; ``excluded`` items (and -inf) never enter."""
    return merge_tops([best_of(scores, n, excluded) for scores in source_scores], n)


def merge_tops(tops: list[SourceTop], n: int) -> Candidates:
    """The union of sources' top ``n`` lists (each best first), with every source's rank and
    score of each item."""
    if not tops:
        empty = np.zeros((0, 0), dtype=np.float32)
        return Candidates(np.zeros(0, dtype=np.int64), empty, empty, n)
    # one sort of every list's items gives the union and each entry's row in it (a few
    # hundred entries: the number of numpy calls, not their work, is the cost)
    lengths = [len(top.items) for top in tops]
    every = np.concatenate([top.items for top in tops])
    order = np.argsort(every, kind="stable")
    ordered = every[order]
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    items = ordered[first]
    rows = np.empty(len(every), dtype=np.int64)
    rows[order] = np.cumsum(first) - 1
    sources = np.repeat(np.arange(len(tops)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ranks = np.full((len(items), len(tops)), n + 1, dtype=np.float32)
    values = np.full((len(items), len(tops)), np.nan, dtype=np.float32)
    ranks[rows, sources] = np.arange(1, len(every) + 1) - starts
    values[rows, sources] = np.concatenate([top.scores for top in tops])
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


# Co-visitation counts are built a block of items at a time, each block's product held to
# about this many entries (a few hundred MB with the selection's work arrays).
BLOCK_ENTRIES = 8_000_000


class CoVisitation:
    """'Bought together with your recent items': for recent items R, an item's score is the
    number of users who had both it and an item of R (counted per such pair), damped by the
    square root of its popularity so best-sellers do not win by size alone.

    The counts come from an item-to-item table built once (``build``): each item's
    ``neighbours`` best partners by damped count (ties: lower index), so a request sums at most
    ``neighbours`` entries per recent item instead of reading every user who had one. Training
    features and serving read the same table. With ``neighbours=None`` every pair is kept and
    the scores are the full definition's, to the bit (the sums are of small integers).
    """

    def __init__(self, table: sp.csr_matrix, damping: np.ndarray) -> None:
        self.table = table  # items x items: users who had both (float32 integer counts)
        self.damping = damping  # 1 / sqrt(popularity + 1)

    @classmethod
    def build(cls, user_items: sp.csr_matrix, neighbours: int | None) -> CoVisitation:
        binary = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        n_items = binary.shape[1]
        popularity = np.asarray(binary.sum(axis=0), dtype=np.float32).ravel()
        damping = (1.0 / np.sqrt(popularity + 1.0)).astype(np.float32)
        by_item = binary.T.tocsr()
        # an upper bound of each item's row of counts: the items of every user who had it
        per_user = np.diff(binary.indptr).astype(np.float64)
        bound = np.cumsum(by_item @ per_user)
        blocks, start = [], 0
        while start < n_items:
            end = int(np.searchsorted(bound, bound[start] + BLOCK_ENTRIES, side="right"))
            end = min(max(end, start + 1), n_items)
            counts = (by_item[start:end] @ binary).tocsr()
            blocks.append(
                counts if neighbours is None else _best_per_row(counts, damping, neighbours)
            )
            start = end
        table = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
        return cls(sp.csr_matrix(table, dtype=np.float32), damping)

    def together(self, recent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The items with a positive score for these recent items (a repeated one counts each
        time), and their scores."""
        n_items = self.table.shape[0]
        recent = recent[(recent >= 0) & (recent < n_items)]
        entries = _row_entries(self.table.indptr, recent)
        if not len(entries):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        items, at = np.unique(self.table.indices[entries], return_inverse=True)
        counts = np.bincount(at, self.table.data[entries], minlength=len(items))
        scores: np.ndarray = counts.astype(np.float32) * self.damping[items]
        return items.astype(np.int64), scores

    def scores(self, recent: np.ndarray) -> np.ndarray:
        """``together`` as a vector over the catalog (0 for every other item)."""
        out = np.zeros(self.table.shape[0], dtype=np.float32)
        items, scores = self.together(recent)
        out[items] = scores
        return out

    def forget(self, removed: sp.csr_matrix, remaining: sp.csr_matrix) -> None:
        """Take out what users' rows (``removed``) put in the table: one count from every kept
        pair of their items; the damping is then the remaining matrix's. Building the table
        again takes seconds on a large shop, too long for an API process that must forget at
        once; a partner the table dropped at training stays dropped until the next build, so
        the kept pairs are training's, each counting the remaining users alone."""
        table = self.table
        counts = table.data.copy()
        for user in range(removed.shape[0]):
            items = removed.indices[removed.indptr[user] : removed.indptr[user + 1]]
            items = np.unique(items[(items >= 0) & (items < table.shape[0])])
            entries = _row_entries(table.indptr, items)
            counts[entries[np.isin(table.indices[entries], items)]] -= 1.0
        kept = sp.csr_matrix((counts, table.indices, table.indptr), shape=table.shape)
        kept.eliminate_zeros()
        popularity = np.bincount(remaining.indices, minlength=table.shape[1]).astype(np.float32)
        # swapped in whole: a request reading the table meanwhile sees the old one or the new
        self.table, self.damping = kept, (1.0 / np.sqrt(popularity + 1.0)).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {
            "covisit_indptr": self.table.indptr,
            "covisit_indices": self.table.indices,
            "covisit_counts": self.table.data,
            "covisit_damping": self.damping,
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> CoVisitation | None:
        """The saved table, or None for arrays saved before there was one."""
        if "covisit_indptr" not in arrays:
            return None
        damping = arrays["covisit_damping"]
        n = len(damping)
        table = sp.csr_matrix(
            (arrays["covisit_counts"], arrays["covisit_indices"], arrays["covisit_indptr"]),
            shape=(n, n),
        )
        return cls(table, damping)


def _best_per_row(counts: sp.csr_matrix, damping: np.ndarray, keep: int) -> sp.csr_matrix:
    """Each row's ``keep`` entries of highest count x damping (ties: lower column first)."""
    lengths = np.diff(counts.indptr)
    if not len(lengths) or lengths.max() <= keep:
        return counts
    rows = np.repeat(np.arange(counts.shape[0]), lengths)
    order = np.lexsort((counts.indices, -(counts.data * damping[counts.indices]), rows))
    rank = np.arange(len(order)) - counts.indptr[rows]  # rows[order] == rows: rows sort first
    picked = order[rank < keep]
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, keep))])
    return sp.csr_matrix((counts.data[picked], counts.indices[picked], indptr), shape=counts.shape)


def _row_entries(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in a CSR matrix's data/indices of every entry of ``rows`` (repeats repeated),
    without a Python loop over the rows."""
    starts, lengths = indptr[rows], indptr[rows + 1] - indptr[rows]
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths  # where each row begins in the output
    return np.repeat(starts - offsets, lengths) + np.arange(total)
