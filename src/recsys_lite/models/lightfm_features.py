"""How LightFM describes items and users: weighted named features, items from the catalog
(identity, category, brand, price bucket, title words), users from their recent events (the
items and categories they used)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys_lite.models.catalog_features import catalog_prices, price_bucket, price_edges

TOKEN = re.compile(r"[^\W_]+")
UserFeatures = Literal["identity", "history", "categories", "history+categories"]


def normalise_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    # LightFM sums feature embeddings with these weights: unnormalised rows would give entities
    # with many features larger norms, and so larger scores, for no reason but verbosity.
    totals = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    scale = sp.diags(np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0))
    return sp.csr_matrix(scale @ matrix, dtype=np.float32)


def _strings(catalog: pa.Table, name: str) -> list[str | None]:
    if name not in catalog.column_names:
        return [None] * catalog.num_rows
    values = pc.cast(catalog.column(name), pa.string()).to_pylist()
    return [v.strip() or None if isinstance(v, str) else None for v in values]


def _title_tokens(catalog: pa.Table) -> list[list[str]]:
    return [
        sorted(set(TOKEN.findall(title.lower()))) if title else []
        for title in _strings(catalog, "title")
    ]


@dataclass(frozen=True)
class CatalogEncoder:
    """Catalog rows → weighted features of the vocabulary seen in training.

    Each group (category, brand, price bucket, title) weighs as much as the identity feature,
    so a long title cannot drown the rest: its words share one group's weight. Values outside
    the vocabulary (a brand that appeared after training) are simply not features.
    """

    names: np.ndarray  # "category:Shoes", "brand:Acme", "price:0", "title:sneakers", ...
    price_edges: np.ndarray  # inner quantile edges of the training catalog's prices

    @classmethod
    def fit(
        cls, catalog: pa.Table, *, price_buckets: int, text_features: bool, min_token_items: int
    ) -> CatalogEncoder:
        prices = catalog_prices(catalog)
        edges = price_edges(prices, price_buckets)
        names: list[str] = []
        for column in ("category", "brand"):
            names.extend(dict.fromkeys(f"{column}:{v}" for v in _strings(catalog, column) if v))
        if price_buckets > 0 and np.isfinite(prices).any():
            names.extend(f"price:{b}" for b in range(len(edges) + 1))
        if text_features:
            tokens = _title_tokens(catalog)
            # A word in a single title is an identity feature in disguise.
            frequency = Counter(t for item_tokens in tokens for t in item_tokens)
            kept = (t for item_tokens in tokens for t in item_tokens)
            names.extend(
                dict.fromkeys(f"title:{t}" for t in kept if frequency[t] >= min_token_items)
            )
        return cls(np.asarray(names, dtype=str), edges)

    def transform(self, catalog: pa.Table) -> sp.csr_matrix:
        """Rows x ``names``; each group present in a row sums to 1 (rows are not normalised)."""
        column = {name: n for n, name in enumerate(self.names.tolist())}
        rows: list[int] = []
        cols: list[int] = []
        weights: list[float] = []

        def add(row: int, features: list[str]) -> None:
            known = [column[f] for f in features if f in column]
            if not known:
                return
            rows.extend([row] * len(known))
            cols.extend(known)
            weights.extend([1.0 / len(known)] * len(known))

        categories, brands = _strings(catalog, "category"), _strings(catalog, "brand")
        prices = catalog_prices(catalog)
        buckets = price_bucket(self.price_edges, prices)
        tokens = _title_tokens(catalog) if any(n.startswith("title:") for n in column) else None
        for row in range(catalog.num_rows):
            add(row, [f"category:{categories[row]}"] if categories[row] else [])
            add(row, [f"brand:{brands[row]}"] if brands[row] else [])
            add(row, [f"price:{buckets[row]}"] if np.isfinite(prices[row]) else [])
            add(row, [f"title:{t}" for t in tokens[row]] if tokens is not None else [])
        return sp.csr_matrix(
            (weights, (rows, cols)), shape=(catalog.num_rows, len(self.names)), dtype=np.float32
        )


@dataclass(frozen=True)
class ItemFeatures:
    """Items x (identity features, then ``encoder.names``); each row sums to 1."""

    matrix: sp.csr_matrix
    names: np.ndarray
    encoder: CatalogEncoder


def item_features(
    catalog: pa.Table | None,
    n_items: int,
    *,
    price_buckets: int = 5,
    text_features: bool = False,
    min_token_items: int = 2,
) -> ItemFeatures:
    """Identity, category, brand, price bucket and title-word features of every item.

    ``catalog`` row i describes item i; column i is item i's identity feature.
    """
    if catalog is None:
        encoder = CatalogEncoder(np.zeros(0, dtype=str), np.zeros(0))
        described = sp.csr_matrix((n_items, 0), dtype=np.float32)
        ids = [str(i) for i in range(n_items)]
    else:
        if catalog.num_rows != n_items:
            raise ValueError(f"catalog has {catalog.num_rows} rows for {n_items} items")
        encoder = CatalogEncoder.fit(
            catalog,
            price_buckets=price_buckets,
            text_features=text_features,
            min_token_items=min_token_items,
        )
        described = encoder.transform(catalog)
        ids = [str(i) for i in catalog.column("item_id").to_pylist()]
    matrix = normalise_rows(sp.hstack([sp.identity(n_items), described], format="csr"))
    names = np.concatenate([np.asarray([f"item:{i}" for i in ids], dtype=str), encoder.names])
    return ItemFeatures(matrix, names, encoder)


def category_codes(catalog: pa.Table, names: np.ndarray) -> np.ndarray:
    """Index into ``names`` of each catalog row's category, -1 where unknown or absent."""
    index = {name: n for n, name in enumerate(names.tolist())}
    return np.array(
        [index.get(v, -1) if v else -1 for v in _strings(catalog, "category")], dtype=np.int64
    )


def history_features(
    indptr: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    item_category: np.ndarray,
    n_categories: int,
    kind: UserFeatures,
    max_items: int,
) -> sp.csr_matrix:
    """User features from events given CSR-style (``indptr`` delimits each user's events, oldest
    first).

    Columns: one per item (if ``kind`` includes history: the user's ``max_items`` most recently
    used distinct items), then one per category (if it includes categories); none for
    ``identity``. Each included group has equal weight and rows sum to 1, or are empty for users
    with no positive weight. Weights are summed per feature and damped with log1p, so one item
    bought over and over does not become the whole profile.
    """
    n_users, n_items = len(indptr) - 1, len(item_category)
    users = np.repeat(np.arange(n_users), np.diff(indptr))
    groups: list[sp.spmatrix] = []
    if kind in ("history", "history+categories"):
        recent = _recent_distinct(users, items, n_items, max_items)
        groups.append(
            sp.coo_matrix(
                (weights[recent], (users[recent], items[recent])), shape=(n_users, n_items)
            )
        )
    if kind in ("categories", "history+categories"):
        codes = item_category[items]
        known = codes >= 0
        groups.append(
            sp.coo_matrix(
                (weights[known], (users[known], codes[known])), shape=(n_users, n_categories)
            )
        )
    if not groups:
        return sp.csr_matrix((n_users, 0), dtype=np.float32)
    parts = []
    for group in groups:
        summed = sp.csr_matrix(group, dtype=np.float64)  # duplicates are summed here
        summed.data = np.log1p(np.maximum(summed.data, 0.0))
        summed.eliminate_zeros()
        parts.append(normalise_rows(summed))
    return normalise_rows(sp.hstack(parts, format="csr"))


def _recent_distinct(users: np.ndarray, items: np.ndarray, n_items: int, limit: int) -> np.ndarray:
    """Mask of the events on each user's ``limit`` most recently used distinct items.

    ``users`` is sorted and each user's events are oldest first.
    """
    pairs = users.astype(np.int64) * n_items + items
    distinct, first_from_end = np.unique(pairs[::-1], return_index=True)
    last_use = len(pairs) - 1 - first_from_end
    owner = users[last_use]
    newest_first = np.lexsort((-last_use, owner))
    owners = owner[newest_first]
    rank = np.arange(len(owners)) - np.searchsorted(owners, owners, side="left")
    return np.isin(pairs, distinct[newest_first[rank < limit]])
