"""Vectors for catalog items that arrive after training, before they have interactions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from recsys_lite.models.base import Recommender

# item ids, and a test for items the model knows -> for each item it can place, its nearest
# items in text and their cosine similarities (search/service.py)
TextNeighbours = Callable[
    [list[str], Callable[[str], bool]], dict[str, tuple[list[str], np.ndarray]]
]


def estimate_vectors(
    model: Recommender,
    item_field: Callable[[str], np.ndarray],
    rows: pa.Table,
    text_neighbours: TextNeighbours | None = None,
) -> np.ndarray | None:
    """The model's own content vectors if it has them (hybrids), else a neighbourhood mean.

    An item's best guess before anyone has touched it is where the items that read most like
    it live (its text neighbours, when the text index holds it), else the average of items it
    shares a category and brand with, then category alone, then the catalog's most popular
    items: it lands where similar items live, so it is shown to the users of those items.
    ``item_field(name)`` gives a catalog field for every item the model knows, by item index.
    """
    own = model.content_vectors(rows)
    if own is not None:
        return own
    vectors = model.item_vectors()
    if vectors is None:
        return None
    ids = rows.column("item_id").to_pylist()
    known = len(vectors)

    def placed(item: str) -> bool:  # the model holds a vector for it (not another new item)
        index = model.item_map.get(item)
        return index is not None and index < known

    near = text_neighbours(ids, placed) if text_neighbours is not None else {}
    categories = item_field("category")
    brands = item_field("brand")
    popular = np.argsort(-model.item_popularity[: len(vectors)])[:100]
    estimates = []
    for item, row in zip(ids, rows.select(["category", "brand"]).to_pylist(), strict=True):
        if item in near:
            neighbour_ids, similarity = near[item]
            indices = np.array([model.item_map.index(i) for i in neighbour_ids], dtype=np.int64)
            # the closest texts count most; a neighbour that reads alike counts far more than
            # one that merely shares a word or two
            weights = np.maximum(similarity, 0.0) ** 4 + 1e-6
            estimates.append(weights @ vectors[indices] / weights.sum())
            continue
        same_category = categories[: len(vectors)] == row["category"]
        same_brand = brands[: len(vectors)] == row["brand"]
        for neighbours in (same_category & same_brand, same_category):
            if row["category"] is not None and neighbours.any():
                estimates.append(vectors[neighbours].mean(axis=0))
                break
        else:
            estimates.append(vectors[popular].mean(axis=0))
    return np.asarray(estimates, dtype=np.float32)
