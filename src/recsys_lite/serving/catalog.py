"""Item metadata aligned with a model's item indices, prepared once for fast responses."""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.store import Store
from recsys_lite.errors import EmptyDataError

log = logging.getLogger(__name__)
RESPONSE_FIELDS = ("title", "category", "brand", "price", "img_url")
FILTER_FIELDS = ("category", "brand")


def _fragment(row: dict[str, Any]) -> bytes:
    """An item's JSON object without its closing brace: the score is appended per answer."""
    return orjson.dumps({name: row.get(name) for name in ("item_id", *RESPONSE_FIELDS)})[:-1]


class Catalog:
    """Each item's response JSON encoded once, so an answer is a join of bytes, not a query
    nor ten dicts to build and serialise on every request."""

    def __init__(self, item_map: IdMap, items: pa.Table | None) -> None:
        self._fragments: list[bytes] = []
        self._fields: dict[str, np.ndarray] = {}
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self.upsert(items, item_map)

    @classmethod
    def from_store(cls, item_map: IdMap, store: Store) -> Catalog:
        try:
            items = store.read_items()
        except (EmptyDataError, duckdb.Error) as exc:
            log.warning("serving without item metadata: %s", exc)
            items = None
        return cls(item_map, items)

    def field(self, name: str) -> np.ndarray:
        return self._fields[name]

    def upsert(self, rows: pa.Table | None, item_map: IdMap) -> None:
        """New or changed catalog rows; new items must already be in ``item_map`` (appended).

        Items the catalog does not describe are answered with their id and null fields.
        """
        known = len(self._fragments)
        new_ids = item_map.ids[known:].tolist()
        self._fragments += [_fragment({"item_id": item_id}) for item_id in new_ids]
        fields = {
            name: np.concatenate(
                [self._fields.get(name, np.zeros(0, object)), np.full(len(new_ids), None)]
            )
            for name in FILTER_FIELDS
        }
        if rows is not None:
            for row in rows.select(["item_id", *RESPONSE_FIELDS]).to_pylist():
                index = item_map.get(row["item_id"])
                if index is None:  # catalog rows of items the model cannot recommend
                    continue
                self._fragments[index] = _fragment(row)
                for name in FILTER_FIELDS:
                    fields[name][index] = row[name]
        self._fields = fields
        self._masks = {}

    def mask(self, category: str | None = None, brand: str | None = None) -> np.ndarray | None:
        """Items allowed by the filters (None when there is no filter)."""
        result: np.ndarray | None = None
        for name, value in (("category", category), ("brand", brand)):
            if value is None:
                continue
            key = (name, value)
            if key not in self._masks:
                self._masks[key] = self._fields[name] == value
            result = self._masks[key] if result is None else result & self._masks[key]
        return result

    def encode(self, items: np.ndarray, scores: np.ndarray) -> bytes:
        """The JSON array of the items' metadata, each with its score rounded to 6 decimals
        (the index and exact paths sum in different orders, so they agree only that far)."""
        if not len(items):
            return b"[]"
        fragments = self._fragments
        # one rounding and one orjson call for all scores: formatting floats one at a time in
        # Python cost more than the rest of the answer
        encoded = orjson.dumps(np.round(scores.astype(np.float64), 6).tolist())[1:-1].split(b",")
        return (
            b"["
            + b"},".join(
                [
                    fragments[i] + b',"score":' + s
                    for i, s in zip(items.tolist(), encoded, strict=True)
                ]
            )
            + b"}]"
        )
