"""The ranker's serving path works on its candidates alone: the co-visitation table, trending's
precomputed order, a retriever searched through its index and the listed ranking give what
the definitions over the whole catalog give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("lightgbm")

from recsys_lite.data.store import Store
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.models.retrieval import blocked_scores, finite_top
from recsys_lite.models.types import Ranked
from recsys_lite.ranking.candidates import CoVisitation, best_listed, best_of
from recsys_lite.ranking.ranker import RankerModel
from recsys_lite.ranking.ranker_stage import searchable

FAST = json.loads((Path(__file__).parent / "fast_params" / "ranker.json").read_text())


@pytest.fixture(scope="module")
def ranker(shop_db: Path) -> RankerModel:
    store = Store(shop_db)
    model = RankerModel(FAST).fit(store.read_events(), store.read_items())
    assert model.booster_text
    # the booster's ranking is what these tests are about, whatever validation chose to serve
    model.fallback = -1
    return model


def _user_items(seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    popular = rng.zipf(1.5, 6_000) % 80
    users = rng.integers(0, 400, 6_000)
    return sp.csr_matrix((np.ones(6_000), (users, popular)), (400, 80))


def test_the_co_visitation_table_keeps_each_items_best_partners() -> None:
    """With ``neighbours`` partners kept, an item's row holds its best partners by count x
    damping; a request sums the kept rows of its recent items and nothing else."""
    matrix = _user_items(2)
    full = CoVisitation.build(matrix, None)
    kept = CoVisitation.build(matrix, 7)
    dense = full.table.toarray()
    damping = full.damping
    np.testing.assert_array_equal(kept.damping, damping)
    for item in range(dense.shape[0]):
        row = kept.table[item]
        assert row.nnz == min(7, np.count_nonzero(dense[item]))
        np.testing.assert_array_equal(row.data, dense[item, row.indices])  # counts unchanged
        weakest = (row.data * damping[row.indices]).min(initial=np.inf)
        dropped = np.setdiff1d(np.flatnonzero(dense[item]), row.indices)
        assert (dense[item, dropped] * damping[dropped] <= weakest).all()
    recent = np.array([3, 3, 11, 40])
    expected = kept.table.toarray()[recent].sum(axis=0).astype(np.float32) * damping
    items, scores = kept.together(recent)
    np.testing.assert_array_equal(items, np.flatnonzero(expected))
    np.testing.assert_array_equal(scores, expected[items])
    assert len(items) < np.count_nonzero(full.scores(recent))


def test_a_sources_top_n_is_one_set_from_a_vector_or_a_list() -> None:
    """Ties go lower index first whichever way the top N is taken."""
    scores = np.array([3, 1, 2, 2, 2, 0, -np.inf, 2, 5], dtype=np.float32)
    excluded = np.array([8])
    dense = best_of(scores, 4, excluded)
    assert dense.items.tolist() == [0, 2, 3, 4]
    listed = best_listed(np.arange(len(scores))[::-1], scores[::-1], 4, excluded)
    np.testing.assert_array_equal(listed.items, dense.items)
    np.testing.assert_array_equal(listed.scores, dense.scores)
    assert best_of(scores, 20, None).items.tolist() == [8, 0, 2, 3, 4, 7, 1, 5]


def test_trending_is_read_from_its_order_as_from_its_scores(ranker: RankerModel) -> None:
    stage = ranker.stage
    for user in range(5):
        seen = ranker.seen_items(user)
        got = stage.trending_top(30, seen)
        wanted = best_of(stage.trending, 30, seen)
        np.testing.assert_array_equal(got.items, wanted.items)
        np.testing.assert_array_equal(got.scores, wanted.scores)


def test_recommend_from_the_candidates_equals_the_catalog_wide_ranking(
    ranker: RankerModel,
) -> None:
    """The listed ranking, filtered and cut to k, is the dense ranking's top k with the same
    filters (an item mask, items to exclude, or what the user has kept in)."""
    n_items = len(ranker.item_map)
    rng = np.random.default_rng(0)
    mask = rng.random(n_items) < 0.6
    for user in range(8):
        seen = ranker.seen_items(user)
        dense = ranker.score_users(np.array([user]))[0]
        listed = ranker.score_user_candidates(user)
        assert listed is not None
        assert np.isfinite(dense).sum() == len(listed.items)
        np.testing.assert_array_equal(dense[listed.items], listed.scores)
        extra = rng.choice(n_items, 5, replace=False)
        for exclude_seen, item_mask in ((True, None), (True, mask), (False, None)):
            excluded = np.union1d(seen, extra) if exclude_seen else extra
            got = ranker.recommend(
                str(ranker.user_map.ids[user]), 10, exclude_seen=exclude_seen,
                item_mask=item_mask, exclude=extra,
            )  # fmt: skip
            _assert_same_top(got, blocked_scores(dense.copy(), excluded, item_mask), 10)
        history = ranker.history(user)
        folded = ranker.recommend_history(history, 10, exclude=extra, item_mask=mask)
        scores = ranker.score_history(history)
        assert folded is not None and scores is not None
        _assert_same_top(folded, blocked_scores(scores, extra, mask), 10)


def _assert_same_top(got: Ranked, blocked: np.ndarray, k: int) -> None:
    """``got`` is the top k of the blocked dense scores, equal scores lower index first (the
    dense top k takes any of them)."""
    wanted = finite_top(blocked, k)
    np.testing.assert_array_equal(got.scores, wanted.scores)
    np.testing.assert_array_equal(blocked[got.items], got.scores)
    for score in np.unique(got.scores):
        np.testing.assert_array_equal(
            got.items[got.scores == score],
            np.flatnonzero(blocked == score)[: int((got.scores == score).sum())],
        )


def test_a_retriever_index_retrieves_the_exact_top_n_and_is_saved(
    ranker: RankerModel, tmp_path: Path
) -> None:
    """On the 400-item test shop the HNSW search visits enough of the catalog to return the
    exact top N: the same candidates as exact scores; the index round-trips the artifact."""
    users = np.arange(6)
    exact = [ranker.score_user_candidates(u) for u in users]
    ranker.build_indexes("hnsw")
    try:
        index = searchable(ranker.stage.retrievers[0])
        assert index is not None and index.kind == "hnsw"
        for user, before in zip(users.tolist(), exact, strict=True):
            after = ranker.score_user_candidates(user)
            assert before is not None and after is not None
            np.testing.assert_array_equal(np.sort(after.items), np.sort(before.items))
        save_artifact(ranker, tmp_path / "m")
        loaded = load_artifact(tmp_path / "m").model
        assert isinstance(loaded, RankerModel)
        held = searchable(loaded.stage.retrievers[0])
        assert held is not None and held.index.hnsw.efSearch == ranker.params.index_ef_search
        for user in users.tolist():
            ids = str(ranker.user_map.ids[user])
            np.testing.assert_array_equal(
                loaded.recommend(ids, 10).items, ranker.recommend(ids, 10).items
            )
        np.testing.assert_array_equal(
            loaded.stage.covisit.table.data, ranker.stage.covisit.table.data
        )
    finally:
        for model in ranker.stage.retrievers:
            model.user_index = None


def test_an_artifact_without_a_table_builds_it_at_load(ranker: RankerModel, tmp_path: Path) -> None:
    save_artifact(ranker, tmp_path / "m")
    arrays = dict(np.load(tmp_path / "m" / "model.npz", allow_pickle=False))
    for key in ("covisit_indptr", "covisit_indices", "covisit_counts", "covisit_damping"):
        del arrays[key]
    older = RankerModel(FAST)
    older.load_state(arrays)
    got, wanted = older.stage.covisit, ranker.stage.covisit
    np.testing.assert_array_equal(got.table.toarray(), wanted.table.toarray())
    assert isinstance(older.stage.trending_order, np.ndarray)


@pytest.mark.parametrize("neighbours", [None, 7])
def test_forgetting_users_takes_their_pairs_out_of_the_table(neighbours: int | None) -> None:
    """What an API process does at once: every kept pair loses what the forgotten users gave
    it. With every pair kept that is the table built without them; with a cut, the kept pairs
    count as they would there."""
    matrix = _user_items(4).tocsr()
    gone = np.array([3, 50, 51, 200])
    keep = np.setdiff1d(np.arange(matrix.shape[0]), gone)
    table = CoVisitation.build(matrix, neighbours)
    kept_before = table.table.copy()
    table.forget(matrix[gone], matrix[keep])
    fresh = CoVisitation.build(matrix[keep], None)
    np.testing.assert_array_equal(table.damping, fresh.damping)
    got, wanted = table.table.toarray(), fresh.table.toarray()
    if neighbours is None:
        np.testing.assert_array_equal(got, wanted)
    else:
        was_kept = kept_before.toarray() > 0
        np.testing.assert_array_equal(got[was_kept], wanted[was_kept])
        assert not got[~was_kept].any()
    assert table.table.data.min() > 0  # a pair nobody is left to make is gone
