"""Vectors for catalog items that arrive after training, before they have interactions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recsys_lite.models.base import Recommender
from recsys_lite.serving.catalog import Catalog


def estimate_vectors(model: Recommender, catalog: Catalog, rows: pa.Table) -> np.ndarray | None:
    """The model's own content vectors if it has them (hybrids), else a neighbourhood mean.

    An item's best guess before anyone has touched it is the average of items it shares a
    category and brand with, then category alone, then the catalog's most popular items: it
    lands where similar items live, so it is shown to the users of those items.
    """
    own = model.content_vectors(rows)
    if own is not None:
        return own
    vectors = model.item_vectors()
    if vectors is None:
        return None
    categories = catalog.field("category")
    brands = catalog.field("brand")
    popular = np.argsort(-model.item_popularity[: len(vectors)])[:100]
    estimates = []
    for row in rows.select(["category", "brand"]).to_pylist():
        same_category = categories[: len(vectors)] == row["category"]
        same_brand = brands[: len(vectors)] == row["brand"]
        for neighbours in (same_category & same_brand, same_category):
            if row["category"] is not None and neighbours.any():
                estimates.append(vectors[neighbours].mean(axis=0))
                break
        else:
            estimates.append(vectors[popular].mean(axis=0))
    return np.asarray(estimates, dtype=np.float32)
