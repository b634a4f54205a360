"""Approximate indexes against exact search on factor-like vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.config import Settings
from recsys_lite.models import create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.models.base import CALIBRATION_QUERIES
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


def ood_catalog(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items in clusters, and queries unlike them (a shared offset), as BPR's and two-tower's
    user vectors are unlike their item vectors: graph search recalls worse there."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 16))
    items = centres[rng.integers(0, 40, 6_000)] + 0.3 * rng.normal(size=(6_000, 16))
    offset = 3 * rng.normal(size=16)
    sample, fresh = (rng.normal(size=(n, 16)) + offset for n in (256, 300))
    return items.astype(np.float32), sample.astype(np.float32), fresh.astype(np.float32)


def recall_at_10(index: VectorIndex, items: np.ndarray, queries: np.ndarray) -> float:
    found, _ = index.search(queries, 10)
    truth = exact_top(items, queries, 10)
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def test_hnsw_keeps_the_smallest_candidate_list_that_reaches_the_target() -> None:
    items, sample, fresh = ood_catalog(1)
    plain = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=16))
    assert plain.calibration is None and plain.index.hnsw.efSearch == 32
    uncalibrated = recall_at_10(plain, items, fresh)
    index = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=16), sample)
    assert index.kind == "hnsw" and index.calibration is not None
    assert index.calibration.recall_at_10 >= 0.95
    assert index.index.hnsw.efSearch == index.calibration.ef_search > 32
    # it holds on queries it was not calibrated on, where the default list fell short
    assert uncalibrated < 0.95 <= recall_at_10(index, items, fresh) + 0.02
    # an operator's FAISS_EF_SEARCH still decides
    index.configure(Settings(faiss_ef_search=16))
    assert index.index.hnsw.efSearch == 16


def test_hnsw_that_cannot_reach_the_target_is_built_exact() -> None:
    items, sample, fresh = ood_catalog(2)
    index = VectorIndex.build(
        items, "hnsw", Settings(faiss_hnsw_m=2, index_recall_target=1.0), sample
    )
    assert index.kind == "flat" and index.calibration is not None
    assert index.calibration.ef_search is None and index.calibration.recall_at_10 < 1.0
    assert recall_at_10(index, items, fresh) == 1.0


def test_the_calibration_travels_with_the_artifact(events: pa.Table, tmp_path: Path) -> None:
    settings = Settings(exact_search_max_items=10)  # the small shop gets HNSW
    model = create_model("bpr", {"iterations": 20}).fit(events)
    model.build_indexes("auto", settings)
    built = model.user_index
    assert isinstance(built, VectorIndex) and built.calibration is not None
    assert built.calibration.queries == min(CALIBRATION_QUERIES, len(model.user_map))
    # half trained shoppers, half folded in from their histories
    sample = model.calibration_queries()
    assert sample is not None
    queries, kinds = sample
    assert len(queries) == len(kinds) == min(CALIBRATION_QUERIES, len(model.user_map))
    assert set(kinds.tolist()) == {0, 1}
    # a caller's stale figures (an erasure re-saving an old manifest) do not replace them
    stale = {"user.faiss": {"ef_search": 999, "recall_at_10": 0.1, "queries": 1}}
    save_artifact(model, tmp_path / "model", extra={"index_calibration": stale})
    loaded = load_artifact(tmp_path / "model", settings).model.user_index
    assert isinstance(loaded, VectorIndex) and loaded.calibration == built.calibration
    if loaded.kind == "hnsw":
        assert loaded.index.hnsw.efSearch == built.calibration.ef_search


def test_similar_items_calibration_leaves_the_item_itself_out() -> None:
    rng = np.random.default_rng(3)
    items = rng.normal(size=(500, 8)).astype(np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    own = np.arange(0, 500, 5)
    index = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=32), items[own], own)
    # on 500 items a dense graph finds every neighbour; counting an item as its own
    # neighbour on one side only would cost a tenth of the recall
    assert index.calibration is not None
    assert index.calibration.recall_at_10 == 1.0 and index.calibration.ef_search == 32


def test_every_kind_of_query_must_reach_the_target() -> None:
    items, sample, _ = ood_catalog(1)
    rng = np.random.default_rng(4)
    # queries like the items (found easily) beside the unlike ones
    like = (items[rng.choice(len(items), 256)] + 0.1 * rng.normal(size=(256, 16))).astype(
        np.float32
    )
    queries = np.vstack([like, sample])
    kinds = np.repeat([0, 1], [len(like), len(sample)])
    pooled = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=16), queries)
    grouped = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=16), queries, groups=kinds)
    alone = VectorIndex.build(items, "hnsw", Settings(faiss_hnsw_m=16), sample)
    assert pooled.calibration and grouped.calibration and alone.calibration
    # the pooled mean lets the easy half carry the hard one; grouped, the hard half decides
    assert grouped.calibration.ef_search == alone.calibration.ef_search
    assert pooled.calibration.ef_search is not None and grouped.calibration.ef_search is not None
    assert pooled.calibration.ef_search < grouped.calibration.ef_search
