"""The serving catalog: answers are valid JSON with each item's metadata and score."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from recsys_lite.data.idmap import IdMap
from recsys_lite.serving.catalog import Catalog

ROWS = pa.table(
    {
        "item_id": ["b", "a", "not-in-model"],
        "category": ["Books", "Toys", "Toys"],
        "brand": ["Nuven", None, "Zizi"],
        "price": [12.5, 3.0, 1.0],
        "img_url": ["https://img/b.jpg", None, None],
        "title": ['The "quoted" book', "Ball", "Kite"],
        "description": [None, None, None],
    }
)


def answer(catalog: Catalog, items: list[int], scores: list[float]) -> list[dict[str, object]]:
    encoded = catalog.encode(np.array(items), np.array(scores, dtype=np.float32))
    decoded: list[dict[str, object]] = json.loads(encoded)
    return decoded


def test_items_carry_their_metadata_and_rounded_scores() -> None:
    catalog = Catalog(IdMap(np.array(["a", "b", "c"])), ROWS)
    got = answer(catalog, [1, 2, 0], [0.123456789, 2.0, -0.5])
    assert got == [
        {
            "item_id": "b",
            "title": 'The "quoted" book',
            "category": "Books",
            "brand": "Nuven",
            "price": 12.5,
            "img_url": "https://img/b.jpg",
            "score": 0.123457,
        },
        # an item the catalog does not describe: its id and nulls
        {
            "item_id": "c",
            "title": None,
            "category": None,
            "brand": None,
            "price": None,
            "img_url": None,
            "score": 2.0,
        },
        {
            "item_id": "a",
            "title": "Ball",
            "category": "Toys",
            "brand": None,
            "price": 3.0,
            "img_url": None,
            "score": -0.5,
        },
    ]
    assert answer(catalog, [], []) == []


def test_upsert_changes_known_items_and_adds_new_ones() -> None:
    item_map = IdMap(np.array(["a", "b"]))
    catalog = Catalog(item_map, ROWS)
    assert catalog.mask(category="Toys").tolist() == [True, False]
    grown = item_map.add(["d"])
    catalog.upsert(
        pa.table(
            {
                "item_id": ["a", "d"],
                "category": ["Books", "Toys"],
                "brand": [None, None],
                "price": [4.0, 9.0],
                "img_url": [None, None],
                "title": ["Ball, new edition", "Drum"],
                "description": [None, None],
            }
        ),
        grown,
    )
    got = answer(catalog, [0, 2], [1.0, 0.5])
    assert [(r["item_id"], r["title"], r["price"]) for r in got] == [
        ("a", "Ball, new edition", 4.0),
        ("d", "Drum", 9.0),
    ]
    # filters follow the new rows
    assert catalog.mask(category="Books").tolist() == [True, True, False]
    assert catalog.mask(category="Toys", brand="Nuven").tolist() == [False, False, False]


def test_made_up_filter_values_cost_no_memory() -> None:
    catalog = Catalog(IdMap(np.array(["a", "b", "c"])), ROWS)
    for n in range(1_000):
        assert not catalog.mask(category=f"no-such-category-{n}").any()
    assert catalog.mask(category="Toys").tolist() == [True, False, False]
    assert len(catalog._masks) == 1  # only values the catalog has are kept
