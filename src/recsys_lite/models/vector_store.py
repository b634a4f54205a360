"""The one interface of item-vector retrieval, whichever engine holds the vectors.

Faiss in-process (models/index.py) is the default and what artifacts carry; Qdrant
(models/qdrant_store.py) is the second implementation, chosen by ``VECTOR_STORE=qdrant`` when
an artifact is loaded. Retrieval (models/retrieval.py) over-fetches, filters and refills
through ``search`` alone, so an implementation needs nothing else to serve filtered requests.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class ItemVectorStore(Protocol):
    """Item vectors whose ids are the model's item indices, searched by inner product."""

    @property
    def kind(self) -> str:
        """What /status reports: the Faiss index kind, or the store's name."""
        ...

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """For each query row, up to ``n`` item indices best first (-1 pads a short row) and
        their inner products, or None when the store cannot give them exactly (the caller then
        re-scores)."""
        ...

    def add(self, vectors: np.ndarray) -> None:
        """Append items; their ids continue from ``len(self)``."""
        ...

    def __len__(self) -> int: ...
