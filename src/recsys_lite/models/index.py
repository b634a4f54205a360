"""Maximum-inner-product retrieval over item vectors, exact or through a Faiss index.

Which index for which catalog size: exact search over 100k x 64 float32 vectors costs about
4 ms here against 0.5 ms for HNSW at the same recall, so ``auto`` keeps exact search (Faiss
``IndexFlatIP``, recall 1.0) up to
``EXACT_SEARCH_MAX_ITEMS`` and switches to HNSW above it (bench/index_recall.py measures the
recall of each choice). HNSW searches the inner product directly. IVF over raw inner products
recalls badly (the coarse quantiser assigns by L2), so the IVF option is built on the
inner-product-to-L2 transform: each item vector gains one coordinate ``sqrt(M^2 - |v|^2)`` so
that its L2 nearest neighbours are its largest inner products (Bachrach et al., RecSys 2014).

HNSW's recall depends on the model: ALS's user vectors lie where its item vectors do, and 32
candidates per query find 98% of the exact top 10 on the 100k benchmark catalog; BPR's,
LightFM's and two-tower's do not, and graph search suffers on queries unlike the indexed
points (their fold-in answers kept 63%, 69% and 25% of the exact top 10 there:
bench/results/fold_in_models_uncalibrated.json). So an HNSW index is calibrated when it is
built, on a sample of the queries it will serve: the smallest candidate list that finds
``INDEX_RECALL_TARGET`` of the exact top 10 is kept with it, and when none up to 512 does, the
index is built exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from recsys_lite.config import IndexKind, Settings, get_settings

BuiltKind = Literal["flat", "hnsw", "ivf"]
HNSW_EF_CONSTRUCTION = 200
CALIBRATION_EF_SEARCH = (32, 64, 128, 256, 512)
CALIBRATION_K = 10
CALIBRATION_BLOCK = 32  # queries scored against the whole catalog at a time


@dataclass(frozen=True)
class Calibration:
    """What an HNSW index found on sample queries when it was built."""

    ef_search: int | None  # the candidate list kept; None: no size reached the target
    recall_at_10: float  # at that size (or the best any size reached)
    queries: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration | None:
        return None if values is None else cls(**values)


def calibrate(
    index: Any,
    vectors: np.ndarray,
    queries: np.ndarray,
    target: float,
    own: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Calibration:
    """The smallest efSearch of ``CALIBRATION_EF_SEARCH`` whose top 10 holds ``target`` of the
    exact top 10 on these queries, in each of their ``groups`` (kinds of query, e.g. trained
    and folded-in shoppers: the recall kept is the lowest group's). ``own``: each query's own
    item (similar-items queries), left out of both lists as the answer leaves it out. A found
    item whose exact score ties the 10th best counts as found: an index cannot be faulted for
    choosing among equals."""
    k = min(CALIBRATION_K, len(vectors) - (own is not None))
    if k <= 0:
        return Calibration(None, 0.0, len(queries))
    tenth = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), CALIBRATION_BLOCK):  # a block of queries x the catalog
        block = queries[start : start + CALIBRATION_BLOCK] @ vectors.T
        if own is not None:
            block[np.arange(len(block)), own[start : start + CALIBRATION_BLOCK]] = -np.inf
        tenth[start : start + len(block)] = -np.partition(-block, k - 1, axis=1)[:, k - 1]
    best = Calibration(None, 0.0, len(queries))
    for ef in CALIBRATION_EF_SEARCH:
        index.hnsw.efSearch = ef
        _, found = index.search(queries, k + (own is not None))
        valid = found >= 0
        if own is not None:
            valid &= found != own[:, None]
        found_scores = np.einsum("qd,qkd->qk", queries, vectors[np.maximum(found, 0)])
        hits = valid & (found_scores >= tenth[:, None] - 1e-6 * np.abs(tenth[:, None]))
        per_query = np.minimum(hits.sum(axis=1), k) / k
        labels = np.zeros(len(queries)) if groups is None else groups
        recall = round(min(float(per_query[labels == g].mean()) for g in np.unique(labels)), 4)
        if recall >= target:
            return Calibration(ef, recall, len(queries))
        best = max(best, Calibration(None, recall, len(queries)), key=lambda c: c.recall_at_10)
    return best


def choose_kind(n_items: int, settings: Settings) -> BuiltKind:
    if settings.faiss_index != "auto":
        return settings.faiss_index
    return "flat" if n_items <= settings.exact_search_max_items else "hnsw"


class VectorIndex:
    """A Faiss index whose ids are item indices and whose search maximises the inner product
    (the default ItemVectorStore, models/vector_store.py; saved in artifacts)."""

    def __init__(self, index: Any, kind: BuiltKind, calibration: Calibration | None = None) -> None:
        self.index = index
        self.kind = kind
        self.calibration = calibration

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        kind: IndexKind = "auto",
        settings: Settings | None = None,
        queries: np.ndarray | None = None,
        own: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> VectorIndex:
        """``queries``: a sample of what the index will be asked, to calibrate HNSW on, with
        ``own`` (each query's own item, when answers leave it out) and ``groups`` (its kind of
        query) as ``calibrate`` takes them."""
        settings = settings or get_settings()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        built: BuiltKind = choose_kind(n, settings) if kind == "auto" else kind
        index: Any
        if built == "flat":
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
            return cls(index, built)
        calibration = None
        if built == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.faiss_hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(vectors)
            if queries is not None and len(queries):
                sample = np.ascontiguousarray(queries, dtype=np.float32)
                calibration = calibrate(
                    index, vectors, sample, settings.index_recall_target, own, groups
                )
                if calibration.ef_search is None:  # exact search is then the honest index
                    index = faiss.IndexFlatIP(dim)
                    index.add(vectors)
                    return cls(index, "flat", calibration)
        else:
            augmented = _augment_items(vectors)
            n_lists = max(1, min(4096, int(4 * np.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim + 1), dim + 1, n_lists)
            index.train(augmented)
            index.add(augmented)
        result = cls(index, built, calibration)
        result.configure(settings)
        return result

    def configure(self, settings: Settings) -> None:
        """Apply query-time knobs (they are not part of the saved index): an HNSW index's
        calibrated candidate list, unless ``FAISS_EF_SEARCH`` is set."""
        if self.kind == "hnsw":
            calibrated = self.calibration.ef_search if self.calibration is not None else None
            chosen = "faiss_ef_search" in settings.model_fields_set or calibrated is None
            self.index.hnsw.efSearch = settings.faiss_ef_search if chosen else calibrated
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
    def load(
        cls,
        path: Path,
        kind: BuiltKind,
        settings: Settings | None = None,
        calibration: Calibration | None = None,
    ) -> VectorIndex:
        result = cls(faiss.read_index(str(path)), kind, calibration)
        result.configure(settings or get_settings())
        return result


def _augment_items(vectors: np.ndarray) -> np.ndarray:
    norms_sq = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(norms_sq.max() - norms_sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]))
