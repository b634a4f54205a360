"""Item metadata aligned with a model's item indices, prepared once for fast responses."""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.store import ITEM_FIELDS, Store
from recsys_lite.data.validation import SET_FIELDS
from recsys_lite.errors import EmptyDataError

log = logging.getLogger(__name__)
RESPONSE_FIELDS = ("title", "category", "brand", "price", "img_url")
FILTER_FIELDS = ("category", "brand")
ITEM_SCHEMA = pa.schema(
    [("item_id", pa.string())]
    + [(name, pa.float64() if name == "price" else pa.string()) for name in ITEM_FIELDS]
)


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
        # every catalog row, recommendable or not, as stored (JSON): what GET /items shows and
        # what a partial update merges onto
        self._rows: dict[str, bytes] = {}
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

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def item(self, item_id: str) -> dict[str, Any] | None:
        """The stored catalog row of an item (all fields), or None if the catalog lacks it."""
        row = self._rows.get(item_id)
        return None if row is None else dict(orjson.loads(row))

    def merge(self, updates: pa.Table) -> pa.Table:
        """Full catalog rows after ``updates``: the fields a row sets (its ``set_fields``, or
        all of its columns) replace the held ones, the others stay; the store's rule too."""
        columns = [name for name in ITEM_FIELDS if name in updates.column_names]
        merged = []
        for row in updates.to_pylist():
            given = row.get(SET_FIELDS)
            given = columns if given is None else given
            held = self.item(row["item_id"]) or {}
            merged.append(
                {"item_id": row["item_id"]}
                | {name: row.get(name) if name in given else held.get(name) for name in ITEM_FIELDS}
            )
        return pa.Table.from_pylist(merged, schema=ITEM_SCHEMA)

    def upsert(self, rows: pa.Table | None, item_map: IdMap) -> None:
        """New or changed full catalog rows (see ``merge``); items new to the model must
        already be in ``item_map`` (appended).

        Items the catalog does not describe are answered with their id and null fields.
        """
        given = [] if rows is None else rows.to_pylist()
        for row in given:
            self._rows[row["item_id"]] = orjson.dumps(
                {"item_id": row["item_id"]} | {name: row.get(name) for name in ITEM_FIELDS}
            )
        known = len(self._fragments)
        new_rows = [self.item(i) or {"item_id": i} for i in item_map.ids[known:].tolist()]
        self._fragments += [_fragment(row) for row in new_rows]
        fields = {
            name: np.concatenate(
                [
                    self._fields.get(name, np.zeros(0, object)),
                    np.array([row.get(name) for row in new_rows], dtype=object),
                ]
            )
            for name in FILTER_FIELDS
        }
        if given:
            for row in given:
                index = item_map.get(row["item_id"])
                # rows of items the model cannot recommend are kept only in _rows; items new
                # to the model got theirs above
                if index is None or index >= known:
                    continue
                self._fragments[index] = _fragment(row)
                for name in FILTER_FIELDS:
                    fields[name][index] = row.get(name)
        self._fields = fields
        self._masks = {}

    def mask(self, category: str | None = None, brand: str | None = None) -> np.ndarray | None:
        """Items allowed by the filters (None when there is no filter)."""
        result: np.ndarray | None = None
        for name, value in (("category", category), ("brand", brand)):
            if value is None:
                continue
            key = (name, value)
            allowed = self._masks.get(key)
            if allowed is None:
                allowed = self._fields[name] == value
                # only values the catalog has are kept: a client sending made-up filter values
                # would otherwise grow a catalog-sized array per value
                if allowed.any():
                    self._masks[key] = allowed
            result = allowed if result is None else result & allowed
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
