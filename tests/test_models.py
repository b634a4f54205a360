"""The contract every registered model keeps, run against each of them on a real demo shop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.errors import InvalidInputError, NotFoundError
from recsys_lite.models import MODELS, Recommender, create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.training import holdout_metrics

# Small, quick settings per model for these tests: tests/fast_params/<model>.json
FAST_PARAMS: dict[str, dict[str, object]] = {
    path.stem: json.loads(path.read_text())
    for path in (Path(__file__).parent / "fast_params").glob("*.json")
}


@pytest.fixture(scope="module", params=sorted(FAST_PARAMS))
def fitted(request: pytest.FixtureRequest, events: pa.Table, items: pa.Table) -> Recommender:
    name = request.param
    return create_model(name, FAST_PARAMS[name]).fit(events, items)


def test_every_model_is_covered() -> None:
    assert set(FAST_PARAMS) == set(MODELS)


def test_recommendations_exclude_what_the_user_has(fitted: Recommender) -> None:
    user_id = fitted.user_map.ids[0]
    seen = set(fitted.seen_items(0).tolist())
    ranked = fitted.recommend(user_id, 10)
    assert len(ranked.items) == 10
    assert not seen & set(ranked.items.tolist())
    assert np.all(np.diff(ranked.scores) <= 1e-6), "best first"
    everything = fitted.recommend(user_id, len(fitted.item_map), exclude_seen=False)
    assert seen <= set(everything.items.tolist())


def test_item_mask_restricts_the_answer(fitted: Recommender) -> None:
    allowed = np.zeros(len(fitted.item_map), dtype=bool)
    allowed[::7] = True
    ranked = fitted.recommend(fitted.user_map.ids[1], 5, item_mask=allowed)
    assert len(ranked.items) == 5 and allowed[ranked.items].all()


def test_unknown_ids_are_not_found(fitted: Recommender) -> None:
    with pytest.raises(NotFoundError):
        fitted.recommend("no-such-user", 5)
    with pytest.raises(NotFoundError):
        fitted.similar_items("no-such-item", 5)


def test_similar_items_never_return_the_item_itself(fitted: Recommender) -> None:
    item_id = fitted.item_map.ids[3]
    similar = fitted.similar_items(item_id, 10)
    if fitted.item_vectors() is None and fitted.score_similar(3) is None:
        assert similar is None  # the API falls back to popular items
        return
    assert similar is not None and len(similar.items) == 10
    assert 3 not in similar.items.tolist()


def test_artifact_round_trip_gives_identical_answers(fitted: Recommender, tmp_path: Path) -> None:
    fitted.build_indexes()
    save_artifact(fitted, tmp_path / "model", metrics={"ok": 1})
    loaded = load_artifact(tmp_path / "model").model
    assert type(loaded) is type(fitted) and loaded.params == fitted.params
    for user_id in fitted.user_map.ids[:5]:
        before, after = fitted.recommend(user_id, 10), loaded.recommend(user_id, 10)
        assert before.items.tolist() == after.items.tolist()
        np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)


def test_index_and_exact_paths_agree(fitted: Recommender) -> None:
    fitted.build_indexes("flat")
    for user_id in fitted.user_map.ids[:20]:
        via_index = fitted.recommend(user_id, 10, use_index=True)
        exact = fitted.recommend(user_id, 10, use_index=False)
        np.testing.assert_allclose(via_index.scores, exact.scores, rtol=1e-5, atol=1e-6)


def test_a_folded_in_shopper_is_searched_like_a_trained_one(
    fitted: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shopper with events since training is served from their history: where the
    model's fold-in is a user vector, through the index trained shoppers are searched with,
    and with the exact path's scores."""
    fitted.build_indexes("flat")
    index = fitted.user_index
    searches: list[int] = []
    if index is not None:  # models with item vectors
        search = index.search
        counted = lambda *a, **kw: searches.append(1) or search(*a, **kw)  # noqa: E731
        monkeypatch.setattr(index, "search", counted)
    folds_to_vector = index is not None and fitted.history_vector(fitted.history(0)) is not None
    assert folds_to_vector == (fitted.name in ("als", "bpr", "item2vec", "lightfm", "two_tower"))
    for user in range(20):
        history, seen = fitted.history(user), fitted.seen_items(user)
        before = len(searches)
        via_index = fitted.recommend_history(history, 10, exclude=seen)
        assert (len(searches) > before) == folds_to_vector
        exact = fitted.recommend_history(history, 10, exclude=seen, use_index=False)
        if exact is None:
            assert via_index is None
            continue
        assert via_index is not None and not set(via_index.items) & set(seen.tolist())
        np.testing.assert_allclose(via_index.scores, exact.scores, rtol=1e-5, atol=1e-6)


def test_folding_in_a_users_own_history_reproduces_their_ranking(fitted: Recommender) -> None:
    """score_history is how new and updated users are served; on a trained user's history it
    must agree with the trained ranking."""
    counts = np.diff(fitted.history_indptr)
    users = np.flatnonzero((counts >= 5) & (counts < 50))[:20]  # history = all their events
    overlaps = []
    for user in users:
        user_id = fitted.user_map.ids[user]
        trained = fitted.recommend(user_id, 10, use_index=False)
        folded = fitted.recommend_history(fitted.history(user), 10, exclude=fitted.seen_items(user))
        assert folded is not None
        overlaps.append(len(set(trained.items) & set(folded.items)) / 10)
    # BPR folds in by a mean of item factors, two-tower without the user-id embedding
    assert np.mean(overlaps) >= (0.6 if fitted.name in ("bpr", "two_tower") else 0.8), overlaps


def test_unknown_params_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="factorz"):
        create_model("als", {"factorz": 10})
    with pytest.raises(InvalidInputError, match="unknown model"):
        create_model("nope")


def test_trending_counts_only_the_recent_window(events: pa.Table) -> None:
    newest = events.column("ts").to_numpy().max()
    recent = events.filter(pa.compute.greater_equal(events.column("ts"), newest - 7 * 86_400))
    trending = create_model("popular", {"window_days": 7}).fit(events)
    top_recent = pa.compute.value_counts(recent.column("item_id")).to_pylist()
    counts = {row["values"]: row["counts"] for row in top_recent}
    best = trending.item_map.ids[trending.popular(1).items[0]]
    assert counts[best] >= max(counts.values()) * 0.5  # distinct-user count vs raw events


def test_als_beats_popularity_on_the_demo_shop(events: pa.Table) -> None:
    als = holdout_metrics("als", {"iterations": 10}, events)["metrics"]["ndcg@10"]
    popular = holdout_metrics("popular", None, events)["metrics"]["ndcg@10"]
    assert als > popular * 1.2, (als, popular)
