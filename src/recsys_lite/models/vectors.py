"""Row operations on user and item vectors that the embedding models share."""

from __future__ import annotations

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (all-zero rows stay zero), as float32: for cosines."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def with_bias_coordinate(users: np.ndarray) -> np.ndarray:
    """User vectors with a trailing 1, which picks up the item bias kept as the items' last
    column: one inner product then gives the whole score."""
    return np.hstack([users, np.ones((len(users), 1), dtype=np.float32)])
