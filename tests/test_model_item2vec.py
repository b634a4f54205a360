"""item2vec: session building, what the vectors learn, and fold-in of new shoppers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.data import demo
from recsys_lite.models import create_model
from recsys_lite.models.item2vec import Item2VecModel, session_sentences
from recsys_lite.models.types import History
from recsys_lite.training import holdout_metrics

QUICK = {"vector_size": 32, "epochs": 8}


def test_sessions_split_at_the_gap_per_user_in_time_order() -> None:
    # rows deliberately out of order; two users interleaved in time
    table = pa.table(
        {
            "user": [1, 0, 0, 1, 0, 0, 0, 1],
            "item": [7, 2, 1, 8, 3, 4, 5, 9],
            "ts": [50, 110, 100, 10, 200, 1000, 1010, 5000],
        }
    )
    sessions = session_sentences(
        table.column("user").to_numpy(),
        table.column("item").to_numpy(),
        table.column("ts").to_numpy(),
        gap_seconds=300,
    )
    assert [s.tolist() for s in sessions] == [[1, 2, 3], [4, 5], [8, 7], [9]]


def test_a_gap_equal_to_the_limit_does_not_split_and_repeats_collapse() -> None:
    users = np.zeros(6, dtype=np.int64)
    items = np.array([1, 1, 1, 2, 2, 1])
    ts = np.array([0, 10, 20, 320, 330, 340])
    collapsed = session_sentences(users, items, ts, gap_seconds=300)
    assert [s.tolist() for s in collapsed] == [[1, 2, 1]]
    kept = session_sentences(users, items, ts, gap_seconds=300, collapse_repeats=False)
    assert [s.tolist() for s in kept] == [[1, 1, 1, 2, 2, 1]]
    assert session_sentences(users[:0], items[:0], ts[:0], 300.0) == []


def test_items_sharing_sessions_are_more_similar_than_unrelated_ones() -> None:
    rng = np.random.default_rng(0)
    groups = [np.arange(0, 6), np.arange(6, 12), np.arange(12, 18)]
    rows = []
    for user in range(300):
        clock = 1_700_000_000 + user
        for _ in range(4):  # sessions a day apart, each within one group
            group = groups[rng.integers(len(groups))]
            for item in rng.choice(group, size=4, replace=False):
                rows.append((f"u{user}", f"i{item:02d}", clock))
                clock += 60
            clock += 86_400
    users, items, ts = zip(*rows, strict=True)
    events = pa.table(
        {
            "user_id": list(users),
            "item_id": list(items),
            "ts": np.array(ts, dtype=np.int64),
            "qty": np.ones(len(rows), dtype=np.int32),
            "event_type": ["view"] * len(rows),
        }
    )
    model = create_model("item2vec", QUICK).fit(events)
    unit = model.similarity_vectors()
    assert unit is not None
    group_of = np.array([int(i[1:]) // 6 for i in model.item_map.ids])
    cosine = unit @ unit.T
    same = group_of[:, None] == group_of[None, :]
    off_diagonal = ~np.eye(len(group_of), dtype=bool)
    assert cosine[same & off_diagonal].mean() > cosine[~same].mean() + 0.3
    for item_id in ("i00", "i07", "i15"):
        similar = model.similar_items(item_id, 5)
        assert similar is not None
        assert set(group_of[similar.items]) == {int(item_id[1:]) // 6}


@pytest.fixture(scope="module")
def shop() -> demo.DemoShop:
    return demo.generate(n_users=1_500, n_items=600, n_events=60_000, seed=1)


@pytest.fixture(scope="module")
def model(shop: demo.DemoShop) -> Item2VecModel:
    fitted = create_model("item2vec", QUICK).fit(shop.events, shop.items)
    assert isinstance(fitted, Item2VecModel)
    return fitted


def category_of(model: Item2VecModel, shop: demo.DemoShop) -> np.ndarray:
    catalog = dict(
        zip(
            shop.items.column("item_id").to_pylist(),
            shop.items.column("category").to_pylist(),
            strict=True,
        )
    )
    return np.array([catalog[i] for i in model.item_map.ids])


def history_of(items: np.ndarray) -> History:
    return History(
        items=items,
        weights=np.ones(len(items), dtype=np.float32),
        ts=np.arange(len(items), dtype=np.int64),
    )


def popular_items_of(model: Item2VecModel, categories: np.ndarray, category: str) -> np.ndarray:
    members = np.flatnonzero(categories == category)
    return members[np.argsort(-model.item_popularity[members], kind="stable")]


def test_a_new_shoppers_category_drives_their_recommendations(
    model: Item2VecModel, shop: demo.DemoShop
) -> None:
    categories = category_of(model, shop)
    shares = []
    for category in np.unique(categories)[:6]:
        browsed = popular_items_of(model, categories, category)[1:6:2]  # not just the top hit
        ranked = model.recommend_history(history_of(browsed), 10, exclude=browsed)
        assert ranked is not None and len(ranked.items) == 10
        shares.append(np.mean(categories[ranked.items] == category))
    assert np.mean(shares) >= 0.7, shares


def test_recent_items_outweigh_older_ones(model: Item2VecModel, shop: demo.DemoShop) -> None:
    categories = category_of(model, shop)
    short_memory = create_model("item2vec", {**QUICK, "recency_half_life": 2.0})
    short_memory.load_state(model.state())  # same vectors, only the user profile changes
    first, second = np.unique(categories)[:2]
    a = popular_items_of(model, categories, first)[:3]
    b = popular_items_of(model, categories, second)[:3]
    for older, newer in ((a, b), (b, a)):
        browsed = np.concatenate([older, newer])  # oldest first
        ranked = short_memory.recommend_history(history_of(browsed), 10, exclude=browsed)
        assert ranked is not None
        newer_share = np.mean(categories[ranked.items] == categories[newer[0]])
        older_share = np.mean(categories[ranked.items] == categories[older[0]])
        assert newer_share > older_share, (newer_share, older_share)


def test_batch_scores_equal_folding_in_each_users_history(model: Item2VecModel) -> None:
    users = np.array([0, 3, 17, 250])
    batch = model.score_users(users)
    for row, user in enumerate(users):
        folded = model.score_history(model.history(user))
        assert folded is not None
        np.testing.assert_allclose(batch[row], folded, rtol=1e-5, atol=1e-6)


def test_item2vec_beats_popularity_on_a_demo_shop(shop: demo.DemoShop) -> None:
    item2vec = holdout_metrics("item2vec", QUICK, shop.events)["metrics"]["ndcg@10"]
    popular = holdout_metrics("popular", None, shop.events)["metrics"]["ndcg@10"]
    assert item2vec > popular * 1.5, (item2vec, popular)
