"""Catalog columns as model features: one reading of prices and one rule for price buckets,
and per-item embedding codes of category, brand and price bucket.

The codes feed embedding tables (the two-tower item tower and the user tower's pooling);
LightFM describes items with weighted named features instead (``lightfm_features``), from the
same prices and price buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FEATURES = ("category", "brand", "price")


def catalog_prices(catalog: pa.Table) -> np.ndarray:
    """Each row's price as a float, NaN where it is missing (or the catalog has no prices)."""
    if "price" not in catalog.column_names:
        return np.full(catalog.num_rows, np.nan)
    column = pc.cast(catalog.column("price"), pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def price_edges(prices: np.ndarray, buckets: int) -> np.ndarray:
    """Inner edges of ``buckets`` price quantiles over the known prices.

    Quantile edges give each bucket about as many items, whatever the price scale. They are
    deduplicated: a catalog with few distinct prices gets fewer, never empty, buckets.
    """
    known = prices[np.isfinite(prices)]
    if buckets <= 0 or not len(known):
        return np.zeros(0)
    return np.unique(np.quantile(known, np.linspace(0, 1, buckets + 1)[1:-1]))


def price_bucket(edges: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Bucket of each price, 0 to ``len(edges)`` (meaningless where the price is unknown)."""
    buckets: np.ndarray = np.searchsorted(edges, prices, side="right")
    return buckets


@dataclass(frozen=True)
class ItemFeatures:
    """Embedding codes of catalog features per item; 0 where the catalog is silent."""

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray

    def code(self, name: str) -> np.ndarray:
        codes: np.ndarray = getattr(self, name)
        return codes

    def take(self, items: np.ndarray) -> ItemFeatures:
        return ItemFeatures(*(self.code(name)[items] for name in FEATURES))

    def grow(self, count: int) -> ItemFeatures:
        return ItemFeatures(
            *(np.concatenate([self.code(name), np.zeros(count, np.int64)]) for name in FEATURES)
        )

    @classmethod
    def unknown(cls, count: int) -> ItemFeatures:
        """Codes of items the catalog says nothing about."""
        return cls(*(np.zeros(count, dtype=np.int64) for _ in FEATURES))


@dataclass(frozen=True)
class CatalogEncoder:
    """Catalog rows to feature codes, with the vocabulary and price buckets of training.

    Code 0 is "unknown": a missing value, or a category or brand first seen after training.
    """

    categories: np.ndarray
    brands: np.ndarray
    price_edges: np.ndarray

    @classmethod
    def fit(cls, catalog: pa.Table | None, price_buckets: int) -> CatalogEncoder:
        if catalog is None or catalog.num_rows == 0:
            empty = np.zeros(0, dtype=str)
            return cls(empty, empty.copy(), np.zeros(0, dtype=np.float64))
        edges = price_edges(catalog_prices(catalog), price_buckets)
        return cls(_vocabulary(catalog, "category"), _vocabulary(catalog, "brand"), edges)

    def sizes(self) -> dict[str, int]:
        """Rows of each feature's embedding table, the unknown code included."""
        return {
            "category": len(self.categories) + 1,
            "brand": len(self.brands) + 1,
            "price": len(self.price_edges) + 2,
        }

    def encode(self, catalog: pa.Table | None, n_items: int) -> ItemFeatures:
        if catalog is None:
            return ItemFeatures.unknown(n_items)
        price = catalog_prices(catalog)
        price_codes = price_bucket(self.price_edges, price) + 1
        return ItemFeatures(
            category=_codes(catalog, "category", self.categories),
            brand=_codes(catalog, "brand", self.brands),
            price=np.where(np.isfinite(price), price_codes, 0).astype(np.int64),
        )


def _vocabulary(catalog: pa.Table, name: str) -> np.ndarray:
    values = pc.unique(catalog.column(name).cast(pa.string()).drop_null())
    return np.sort(np.asarray(values.to_numpy(zero_copy_only=False), dtype=str))


def _codes(catalog: pa.Table, name: str, vocabulary: np.ndarray) -> np.ndarray:
    column = catalog.column(name).cast(pa.string())
    found = pc.index_in(column, value_set=pa.array(vocabulary.tolist(), type=pa.string()))
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), np.int64) + 1
