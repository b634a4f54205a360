"""Item metadata aligned with a model's item indices, prepared once for fast responses."""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.store import Store
from recsys_lite.errors import EmptyDataError

log = logging.getLogger(__name__)
RESPONSE_FIELDS = ("title", "category", "brand", "price", "img_url")


class Catalog:
    """One ready-made response dict per item, so answering is a dict copy, not a query."""

    def __init__(self, item_map: IdMap, items: pa.Table | None) -> None:
        rows: dict[str, dict[str, Any]] = {}
        if items is not None:
            for row in items.select(["item_id", *RESPONSE_FIELDS]).to_pylist():
                rows[row["item_id"]] = row
        self.payloads: list[dict[str, Any]] = [
            rows.get(item_id) or dict.fromkeys(RESPONSE_FIELDS, None) | {"item_id": item_id}
            for item_id in item_map.ids.tolist()
        ]
        self._fields = {
            name: np.array([p.get(name) for p in self.payloads], dtype=object)
            for name in ("category", "brand")
        }
        self._masks: dict[tuple[str, str], np.ndarray] = {}

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

    def upsert(self, rows: pa.Table, item_map: IdMap) -> None:
        """New or changed catalog rows; new items must already be in ``item_map`` (appended)."""
        by_id = {
            row["item_id"]: row for row in rows.select(["item_id", *RESPONSE_FIELDS]).to_pylist()
        }
        for item_id in item_map.ids[len(self.payloads) :].tolist():
            self.payloads.append(dict.fromkeys(RESPONSE_FIELDS, None) | {"item_id": item_id})
        for item_id, row in by_id.items():
            index = item_map.get(item_id)
            if index is not None:
                self.payloads[index] = row
        self._fields = {
            name: np.array([p.get(name) for p in self.payloads], dtype=object)
            for name in ("category", "brand")
        }
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

    def describe(self, items: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
        payloads = self.payloads
        return [
            {**payloads[i], "score": round(s, 6)}
            for i, s in zip(items.tolist(), scores.tolist(), strict=True)
        ]
