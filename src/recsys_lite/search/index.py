"""The text index of a catalog: sentence vectors in Faiss and a BM25 index over the same items.

An index is never changed once built: new or edited items make a new index (``with_rows``)
that replaces the old one with one reference assignment, so a query running meanwhile reads
one consistent index.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import bm25s
import faiss
import numpy as np
import orjson

from recsys_lite.errors import ArtifactError
from recsys_lite.ranking.filters import MAX_CACHED_MASKS, ItemFilter, eligible_mask
from recsys_lite.search.embedder import DIMENSION
from recsys_lite.search.text import lexical_text, text_key

FILTER_FIELDS = ("category", "brand", "price", "available")


def field_value(row: dict[str, Any], name: str) -> Any:
    # a missing availability means available, as everywhere in the catalog
    return row.get(name) is not False if name == "available" else row.get(name)


def field_array(name: str, values: list[Any]) -> np.ndarray:
    if name == "price":  # NaN (no price, or an index from before prices) fails every bound
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=bool if name == "available" else object)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased words of two or more letters or digits, English stop words removed: a code
    like ``SKU-48213`` becomes ``sku`` and ``48213``, both matchable."""
    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en", return_ids=False, show_progress=False
    )
    return tokens


def one_faiss_thread() -> None:
    """One OpenMP thread for Faiss in the calling thread. The count is per thread: the API's
    setting (serving/runtime.py) does not reach the worker threads searches run in, where a
    team of two spinning on shared cores made one search of 20,000 vectors cost 25 ms at p50
    instead of 1 ms (measured at load 9 on 2 cores). A single query has nothing to share."""
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)


def best(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n highest scores, best first."""
    n = min(n, len(scores))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.argsort(-scores[part], kind="stable")]


@dataclass
class TextIndex:
    ids: list[str]
    keys: list[str]  # text_key of each item: which vectors a rebuild may reuse
    lexical_texts: list[str]
    fields: dict[str, np.ndarray]  # FILTER_FIELDS per item, for filters
    vectors: np.ndarray  # unit rows, float32
    positions: dict[str, int] = field(init=False)
    _faiss: Any = field(init=False)
    _bm25: Any = field(init=False)
    _masks: dict[tuple[str, str], np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.positions = {item: n for n, item in enumerate(self.ids)}
        self._faiss = faiss.IndexFlatIP(DIMENSION)
        if len(self.vectors):
            self._faiss.add(self.vectors)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokenize(self.lexical_texts), show_progress=False)
        self._masks = {}

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, rows: Sequence[dict[str, Any]], vectors: np.ndarray) -> TextIndex:
        """From full catalog rows and their sentence vectors (one row each, same order)."""
        return cls(
            ids=[row["item_id"] for row in rows],
            keys=[text_key(row) for row in rows],
            lexical_texts=[lexical_text(row) for row in rows],
            fields={
                name: field_array(name, [field_value(row, name) for row in rows])
                for name in FILTER_FIELDS
            },
            vectors=np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, DIMENSION),
        )

    def with_rows(self, rows: Sequence[dict[str, Any]], vectors: np.ndarray) -> TextIndex:
        """A new index where these rows replace the items they describe or are appended (a
        later row of the same item wins)."""
        ids, keys, texts = list(self.ids), list(self.keys), list(self.lexical_texts)
        fields = {name: list(values) for name, values in self.fields.items()}
        positions = dict(self.positions)
        for row in rows:
            if row["item_id"] not in positions:
                positions[row["item_id"]] = len(ids)
                ids.append(row["item_id"])
                keys.append("")
                texts.append("")
                for values in fields.values():
                    values.append(None)  # set below
        all_vectors = np.zeros((len(ids), DIMENSION), dtype=np.float32)
        all_vectors[: len(self)] = self.vectors
        for row, vector in zip(rows, vectors, strict=True):
            position = positions[row["item_id"]]
            all_vectors[position] = vector
            keys[position], texts[position] = text_key(row), lexical_text(row)
            for name, values in fields.items():
                values[position] = field_value(row, name)
        return TextIndex(
            ids, keys, texts,
            {name: field_array(name, values) for name, values in fields.items()},
            all_vectors,
        )  # fmt: skip

    def vectors_by_key(self) -> dict[str, np.ndarray]:
        return {key: self.vectors[n] for n, key in enumerate(self.keys)}

    # ----- queries -----------------------------------------------------------------------------

    def eligible(self, item_filter: ItemFilter) -> np.ndarray | None:
        """Available items the filter allows, over this index's items (None: all). The
        index holds its own copy of the filtered fields: it also has items the served model
        does not, posted after training."""
        available = self.fields["available"]
        if item_filter.empty and available.all():
            return None
        return eligible_mask(
            item_filter, available, self._any_of, self.fields["price"], self.positions.get
        )

    def _any_of(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        masks = []
        for value in values:
            mask = self._masks.get((name, value))
            if mask is None:
                mask = self.fields[name] == value
                # only values the items have: made-up filter values must not grow the cache
                if mask.any() and len(self._masks) < MAX_CACHED_MASKS:
                    self._masks[(name, value)] = mask
            masks.append(mask)
        return masks[0] if len(masks) == 1 else np.logical_or.reduce(masks)

    def semantic(self, query: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
        """Positions of the n allowed items nearest the query vector, best first."""
        one_faiss_thread()
        vector = query[None, :].astype(np.float32)
        if allowed is None:
            _, found = self._faiss.search(vector, min(n, len(self)))
        else:
            eligible = int(np.count_nonzero(allowed))
            if not eligible:
                return np.zeros(0, dtype=np.int64)
            # Faiss's flat index skips the items a selector refuses before computing their
            # products, so a search inside the mask costs about its eligible rows: exact,
            # with no over-fetch, and cheaper than gathering the rows for numpy, whose
            # two-thread BLAS took 13 ms for 1,200 of 20,000 rows on the shared cores against
            # 0.2 ms this way (measured once, at load 4)
            bits = np.packbits(allowed, bitorder="little")
            # both held in locals: Faiss reads them through raw pointers during the search
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
            inside = faiss.SearchParameters()
            inside.sel = selector
            _, found = self._faiss.search(vector, min(n, eligible), params=inside)
        positions: np.ndarray = found[0]
        return positions[positions >= 0]

    def lexical(self, query: str, n: int, allowed: np.ndarray | None) -> np.ndarray:
        """Positions of the n best allowed BM25 matches (at least one query word in common)."""
        vocabulary = self._bm25.vocab_dict
        words = [word for word in tokenize([query])[0] if word in vocabulary]
        if not words or not len(self):
            return np.zeros(0, dtype=np.int64)
        scores = np.asarray(self._bm25.get_scores(words), dtype=np.float32)
        if allowed is None:
            top = best(scores, n)
            matched: np.ndarray = top[scores[top] > 0]
            return matched
        # only the allowed items compete: a narrow filter ranks its few rows, not the catalog
        candidates = np.flatnonzero(allowed)
        allowed_scores = scores[candidates]
        top = best(allowed_scores, n)
        matched = candidates[top[allowed_scores[top] > 0]]
        return matched

    def nearest(self, position: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The n items most similar in text to the item at ``position`` (itself excluded)."""
        one_faiss_thread()
        similarities, found = self._faiss.search(self.vectors[position][None, :], n + 1)
        keep = (found[0] >= 0) & (found[0] != position)
        return found[0][keep][:n], similarities[0][keep][:n]

    # ----- persistence -------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        meta = orjson.dumps(
            {
                "ids": self.ids, "keys": self.keys, "lexical_texts": self.lexical_texts,
                "fields": {name: values.tolist() for name, values in self.fields.items()},
            }
        )  # fmt: skip
        buffer = io.BytesIO()
        np.savez(buffer, vectors=self.vectors, meta=np.frombuffer(meta, dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TextIndex:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                vectors = arrays["vectors"]
                meta = orjson.loads(arrays["meta"].tobytes())
            return cls(
                meta["ids"], meta["keys"], meta["lexical_texts"],
                {
                    name: field_array(
                        name,
                        meta["fields"].get(name)
                        or [field_value({}, name) for _ in range(len(meta["ids"]))],
                    )
                    for name in FILTER_FIELDS
                },
                vectors,
            )  # fmt: skip
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"search index cannot be read: {exc}") from exc
