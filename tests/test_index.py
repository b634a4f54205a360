"""Approximate indexes against exact search on factor-like vectors."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_lite.config import Settings
from recsys_lite.models.index import VectorIndex, choose_kind


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ items.T), axis=1)[:, :k]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_recall_at_10_against_exact_search(kind: str) -> None:
    rng = np.random.default_rng(0)
    # factor-like: a few strong directions and uneven norms, as MF item vectors have
    items = (rng.normal(size=(8_000, 32)) * rng.lognormal(0, 0.5, (8_000, 1))).astype(np.float32)
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    index = VectorIndex.build(items, kind, Settings(faiss_ef_search=128))  # type: ignore[arg-type]
    found, scores = index.search(queries, 10)
    truth = exact_top(items, queries, 10)
    # the scores are the exact inner products of what was found, best first
    assert scores is not None
    expected = np.einsum("qd,qkd->qk", queries, items[found])
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= (1.0 if kind == "flat" else 0.95), recall


def test_auto_choice_follows_catalog_size() -> None:
    settings = Settings(exact_search_max_items=1000)
    assert choose_kind(1000, settings) == "flat"
    assert choose_kind(1001, settings) == "hnsw"
    assert choose_kind(10, Settings(faiss_index="ivf")) == "ivf"
