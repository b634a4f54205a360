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
from recsys_lite.ranking.filters import MAX_CACHED_MASKS, ItemFilter, eligible_mask

log = logging.getLogger(__name__)
RESPONSE_FIELDS = ("title", "category", "brand", "price", "img_url")
# per-item arrays aligned with the model's item indices, for filters and explanations
FIELD_ARRAYS = ("category", "brand", "title", "price", "available")
_TYPES = {"price": pa.float64(), "available": pa.bool_()}
ITEM_SCHEMA = pa.schema(
    [("item_id", pa.string())] + [(name, _TYPES.get(name, pa.string())) for name in ITEM_FIELDS]
)


def _column(name: str, values: list[Any]) -> np.ndarray:
    if name == "price":  # NaN (no price) fails every price bound
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if name == "available":  # a missing value means available
        return np.array([v is not False for v in values], dtype=bool)
    return np.array(values, dtype=object)


def _fragment(row: dict[str, Any]) -> bytes:
    """An item's JSON object without its closing brace: the score is appended per answer."""
    return orjson.dumps({name: row.get(name) for name in ("item_id", *RESPONSE_FIELDS)})[:-1]


def _single_value(item_filter: ItemFilter) -> tuple[str, str] | None:
    """("category", value) or ("brand", value) when that is all the filter asks."""
    categories, brands = item_filter.categories, item_filter.brands
    if len(categories) == 1 and item_filter == ItemFilter(categories=categories):
        return "category", categories[0]
    if len(brands) == 1 and item_filter == ItemFilter(brands=brands):
        return "brand", brands[0]
    return None


class Catalog:
    """Each item's response JSON encoded once, so an answer is a join of bytes, not a query
    nor ten dicts to build and serialise on every request."""

    def __init__(self, item_map: IdMap, items: pa.Table | None) -> None:
        self._fragments: list[bytes] = []
        self._fields: dict[str, np.ndarray] = {}
        self._masks: dict[tuple[str, str], np.ndarray] = {}
        self._because: dict[int, bytes] = {}
        self._item_map = item_map
        self._all_available = True
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
                {"item_id": row["item_id"]}
                | {name: row.get(name) for name in ITEM_FIELDS}
                | {"available": row.get("available") is not False}
            )
        known = len(self._fragments)
        new_rows = [self.item(i) or {"item_id": i} for i in item_map.ids[known:].tolist()]
        self._fragments += [_fragment(row) for row in new_rows]
        fields = {
            name: np.concatenate(
                [
                    self._fields.get(name, _column(name, [])),
                    _column(name, [row.get(name) for row in new_rows]),
                ]
            )
            for name in FIELD_ARRAYS
        }
        if given:
            for row in given:
                index = item_map.get(row["item_id"])
                # rows of items the model cannot recommend are kept only in _rows; items new
                # to the model got theirs above
                if index is None or index >= known:
                    continue
                self._fragments[index] = _fragment(row)
                for name in FIELD_ARRAYS:
                    fields[name][index] = _column(name, [row.get(name)])[0]
        self._fields = fields
        self._masks = {}
        self._because = {}
        self._item_map = item_map
        self._all_available = bool(fields["available"].all())

    def _value_mask(self, name: str, value: str) -> np.ndarray:
        key = (name, value)
        allowed = self._masks.get(key)
        if allowed is None:
            allowed = self._fields[name] == value
            # only values the catalog has are kept: a client sending made-up filter values
            # would otherwise grow a catalog-sized array per value
            if allowed.any() and len(self._masks) < MAX_CACHED_MASKS:
                # shared by every request with this value: read-only, so retrieval may keep
                # derived arrays (models/retrieval.py) for as long as it lives
                allowed.flags.writeable = False
                self._masks[key] = allowed
        return allowed

    def _any_of(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        masks = [self._value_mask(name, value) for value in values]
        return masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)

    def eligible(self, item_filter: ItemFilter) -> np.ndarray | None:
        """Items a request may be answered with: available and allowed by the filter; None
        when that is every item (the unfiltered hot path then skips masking altogether)."""
        if item_filter.empty and self._all_available:
            return None
        single = _single_value(item_filter)
        if single is not None and self._all_available:  # a category page: its cached mask
            return self._value_mask(*single)
        return eligible_mask(
            item_filter, self._fields["available"], self._any_of, self._fields["price"],
            self._item_map.get,
        )  # fmt: skip

    def mask(self, category: str | None = None, brand: str | None = None) -> np.ndarray | None:
        """Items allowed by one category and one brand (None when there is no filter)."""
        if category is None and brand is None:
            return None
        return self.eligible(
            ItemFilter(
                categories=() if category is None else (category,),
                brands=() if brand is None else (brand,),
            )
        )

    @property
    def because_fragments(self) -> dict[int, bytes]:
        """The cache ``because_fragment`` fills (the compiled explanation kernel reads it
        directly and calls ``because_fragment`` only on a miss)."""
        return self._because

    def because_fragment(self, index: int) -> bytes:
        """An item's id and title as an explanation names it: a JSON object without its
        closing brace, encoded once per item and catalog update."""
        fragment = self._because.get(index)
        if fragment is None:
            item_id = str(self._item_map.ids[index])
            fragment = orjson.dumps({"item_id": item_id, "title": self.title(index)})[:-1]
            self._because[index] = fragment
        return fragment

    def title(self, index: int) -> str | None:
        title: str | None = self._fields["title"][index]
        return title

    def encode(
        self, items: np.ndarray, scores: np.ndarray, extras: list[bytes] | None = None
    ) -> bytes:
        """The JSON array of the items' metadata, each with its score rounded to 6 decimals
        (the index and exact paths sum in different orders, so they agree only that far) and,
        when given, an extra encoded ``,"key":value`` per item."""
        if not len(items):
            return b"[]"
        fragments = self._fragments
        # one rounding and one orjson call for all scores: formatting floats one at a time in
        # Python cost more than the rest of the answer
        encoded = orjson.dumps(np.round(scores.astype(np.float64), 6).tolist())[1:-1].split(b",")
        parts = [
            fragments[i] + b',"score":' + s for i, s in zip(items.tolist(), encoded, strict=True)
        ]
        if extras is not None:
            parts = [part + extra for part, extra in zip(parts, extras, strict=True)]
        return b"[" + b"},".join(parts) + b"}]"
