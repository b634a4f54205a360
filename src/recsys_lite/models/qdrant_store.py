"""Item vectors in Qdrant, the second ItemVectorStore (``VECTOR_STORE=qdrant``; qdrant extra).

Points are the model's item indices, scored by dot product: the scores are the inner products
the Faiss index and the exact path compute. Without ``QDRANT_URL`` each store is a private
collection in Qdrant's local mode, in memory, built when the artifact is loaded; local mode
scores every vector (exact, recall 1.0), which suits tests and small catalogs. Its on-disk
variant is not offered: it locks its folder to one process, and serving runs several (API
workers, the background worker).

On a server, a collection is named by the artifact's arrays checksum and the role, so every
replica and restart serving one artifact opens the same collection; the first to find it
incomplete uploads the vectors (the same points again when two race, which is harmless).
Items added after training (POST /items) stay in the process, beside the collection, and are
scored exactly: they are few until the next retrain, and a shared collection then never holds
one replica's new item under an index another replica gave a different item.
"""

from __future__ import annotations

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from recsys_lite.config import Settings
from recsys_lite.errors import VectorStoreError

UPLOAD_BATCH = 1_024
# What a server that is down or refuses raises (connection errors arrive wrapped in the first).
FAILURES = (ResponseHandlingException, UnexpectedResponse, OSError)


def make_client(settings: Settings) -> QdrantClient:
    if settings.qdrant_url is None:
        return QdrantClient(location=":memory:")
    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    # the version check is one more request per client and only warns
    return QdrantClient(
        url=settings.qdrant_url,
        api_key=key,
        timeout=settings.qdrant_timeout,
        check_compatibility=False,
    )


class QdrantStore:
    """A Qdrant collection of item vectors, plus the items added since it was written."""

    kind = "qdrant"

    def __init__(self, client: QdrantClient, collection: str, count: int, dim: int) -> None:
        self.client = client
        self.collection = collection
        self.count = count
        self.added = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def open(cls, vectors: np.ndarray, name: str, settings: Settings) -> QdrantStore:
        """The collection ``name`` holding ``vectors`` (ids 0..n-1), created or completed."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        client = make_client(settings)
        collection = f"{settings.qdrant_collection}-{name}"
        try:
            ensure_collection(client, collection, vectors)
        except FAILURES as exc:
            where = settings.qdrant_url or "local mode"
            raise VectorStoreError(
                f"Qdrant ({where}): cannot open collection {collection}: {exc}"
            ) from exc
        return cls(client, collection, len(vectors), vectors.shape[1])

    def __len__(self) -> int:
        return self.count + len(self.added)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        added = self.added  # read once: add() swaps in a new array
        n = max(0, min(n, self.count + len(added)))
        ids = np.full((len(queries), n), -1, dtype=np.int64)
        scores = np.full((len(queries), n), -np.inf, dtype=np.float32)
        if n == 0:
            return ids, scores
        for row, points in enumerate(self._query(queries, min(n, self.count))):
            ids[row, : len(points)] = [int(point.id) for point in points]
            scores[row, : len(points)] = [point.score for point in points]
        if len(added):
            ids, scores = _with_added(ids, scores, queries @ added.T, self.count)
        return ids, scores

    def add(self, vectors: np.ndarray) -> None:
        self.added = np.vstack([self.added, np.asarray(vectors, dtype=np.float32)])

    def _query(self, queries: np.ndarray, limit: int) -> list[list[models.ScoredPoint]]:
        try:
            if len(queries) == 1:  # one request per shopper: skip the batch wrapper
                response = self.client.query_points(
                    self.collection, query=queries[0].tolist(), limit=limit, with_payload=False
                )
                return [response.points]
            requests = [
                models.QueryRequest(query=query.tolist(), limit=limit, with_payload=False)
                for query in queries
            ]
            responses = self.client.query_batch_points(self.collection, requests)
            return [response.points for response in responses]
        except FAILURES as exc:
            raise VectorStoreError(f"Qdrant: search in {self.collection} failed: {exc}") from exc


def ensure_collection(client: QdrantClient, collection: str, vectors: np.ndarray) -> None:
    """``collection`` holding ``vectors`` under ids 0..n-1, whether another process created it,
    filled it, or stopped halfway."""
    if not client.collection_exists(collection):
        params = models.VectorParams(size=vectors.shape[1], distance=models.Distance.DOT)
        try:
            client.create_collection(collection, vectors_config=params)
        except UnexpectedResponse:
            if not client.collection_exists(collection):  # not another replica's creation
                raise
    # A name holds one artifact's vectors, so a full count means a complete upload.
    if client.count(collection, exact=True).count != len(vectors):
        client.upload_collection(
            collection, vectors, ids=range(len(vectors)), batch_size=UPLOAD_BATCH, wait=True
        )


def _with_added(
    ids: np.ndarray, scores: np.ndarray, added_scores: np.ndarray, first_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """The collection's candidates and the added items', best first, as many as asked."""
    n = ids.shape[1]
    added_ids = np.broadcast_to(first_id + np.arange(added_scores.shape[1]), added_scores.shape)
    all_ids = np.hstack([ids, added_ids])
    all_scores = np.hstack([scores, added_scores.astype(np.float32)])
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :n]
    return np.take_along_axis(all_ids, order, 1), np.take_along_axis(all_scores, order, 1)
