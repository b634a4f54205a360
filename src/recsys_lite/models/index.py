"""Maximum-inner-product retrieval over item vectors, exact or through a Faiss index.

Which index for which catalog size: exact search over 100k x 64 float32 vectors costs about
4 ms here against 0.5 ms for HNSW at the same recall, so ``auto`` keeps exact search (Faiss
``IndexFlatIP``, recall 1.0) up to
``EXACT_SEARCH_MAX_ITEMS`` and switches to HNSW above it (bench/index_recall.py measures the
recall of each choice). HNSW searches the inner product directly. IVF over raw inner products
recalls badly (the coarse quantiser assigns by L2), so the IVF option is built on the
inner-product-to-L2 transform: each item vector gains one coordinate ``sqrt(M^2 - |v|^2)`` so
that its L2 nearest neighbours are its largest inner products (Bachrach et al., RecSys 2014).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from recsys_lite.config import IndexKind, Settings, get_settings

BuiltKind = Literal["flat", "hnsw", "ivf"]
HNSW_EF_CONSTRUCTION = 200


def choose_kind(n_items: int, settings: Settings) -> BuiltKind:
    if settings.faiss_index != "auto":
        return settings.faiss_index
    return "flat" if n_items <= settings.exact_search_max_items else "hnsw"


class VectorIndex:
    """A Faiss index whose ids are item indices and whose search maximises the inner product
    (the default ItemVectorStore, models/vector_store.py; saved in artifacts)."""

    def __init__(self, index: Any, kind: BuiltKind) -> None:
        self.index = index
        self.kind = kind

    @classmethod
    def build(
        cls, vectors: np.ndarray, kind: IndexKind = "auto", settings: Settings | None = None
    ) -> VectorIndex:
        settings = settings or get_settings()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        built: BuiltKind = choose_kind(n, settings) if kind == "auto" else kind
        index: Any
        if built == "flat":
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
            return cls(index, built)
        if built == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.faiss_hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(vectors)
        else:
            augmented = _augment_items(vectors)
            n_lists = max(1, min(4096, int(4 * np.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim + 1), dim + 1, n_lists)
            index.train(augmented)
            index.add(augmented)
        result = cls(index, built)
        result.configure(settings)
        return result

    def configure(self, settings: Settings) -> None:
        """Apply query-time knobs (they are not part of the saved index)."""
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = settings.faiss_ef_search
        elif self.kind == "ivf":
            self.index.nprobe = settings.faiss_nprobe

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Candidate item indices per query, best first (-1 pads where the index found fewer),
        and their inner products when the index computes them exactly.

        Flat and HNSW indexes keep the vectors as given, so their distances are the exact
        inner products and need no second pass; IVF's are L2 distances in the transformed space
        (None here), so its candidates must be re-scored by the caller.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if self.kind == "ivf":  # queries get a zero in the transform's extra coordinate
            queries = np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)])
        n = min(n, self.index.ntotal)
        distances, ids = self.index.search(queries, n)
        return np.asarray(ids), None if self.kind == "ivf" else np.asarray(distances)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append items (ids continue from the current count)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.kind == "ivf":
            # the transform's norm bound was fixed at build time; new items are placed as if
            # at that bound, which keeps them findable until the next retrain rebuilds it
            vectors = np.hstack([vectors, np.zeros((len(vectors), 1), dtype=np.float32)])
        self.index.add(vectors)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: BuiltKind, settings: Settings | None = None) -> VectorIndex:
        result = cls(faiss.read_index(str(path)), kind)
        result.configure(settings or get_settings())
        return result


def _augment_items(vectors: np.ndarray) -> np.ndarray:
    norms_sq = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(norms_sq.max() - norms_sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]))
