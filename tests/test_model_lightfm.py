"""LightFM hybrid: catalog features carry items nobody has interacted with yet."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recsys_lite.models import History, create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.models.lightfm_hybrid import LightFMModel, history_features, item_features

CATEGORIES = {"Coffee": ("BeanCo", "Roastery"), "Books": ("Inkwell", "Pageturn")}
ITEMS_PER_BRAND = 4
COLD = "NEW-COFFEE"
PARAMS = {"no_components": 16, "epochs": 20, "learning_rate": 0.05, "random_state": 3}


def _catalog() -> pa.Table:
    rows = []
    for category, brands in CATEGORIES.items():
        base_price = 9.0 if category == "Coffee" else 25.0
        for brand in brands:
            for n in range(ITEMS_PER_BRAND):
                rows.append(
                    {
                        "item_id": f"{category}-{brand}-{n}",
                        "category": category,
                        "brand": brand,
                        "price": base_price + n,
                        "title": f"{brand} {category} no {n}",
                    }
                )
    # Shares category, brand and price range with the popular BeanCo coffees; no events at all.
    rows.append(
        {
            "item_id": COLD,
            "category": "Coffee",
            "brand": "BeanCo",
            "price": 10.0,
            "title": "BeanCo Coffee new",
        }
    )
    table = pa.Table.from_pylist(rows)
    nulls = pa.nulls(table.num_rows, pa.string())
    return table.append_column("img_url", nulls).append_column("description", nulls)


def _category_of(item_id: str) -> str:
    return item_id.split("-")[0] if item_id != COLD else "Coffee"


@pytest.fixture(scope="module")
def shop() -> tuple[pa.Table, pa.Table]:
    """Users who each stick to one category and, within it, mostly to one brand."""
    rng = np.random.default_rng(11)
    catalog = _catalog()
    ids = [i for i in catalog.column("item_id").to_pylist() if i != COLD]
    rows = []
    ts = 1_700_000_000
    for user in range(240):
        category = list(CATEGORIES)[user % 2]
        brands = CATEGORIES[category]
        loyal = brands[(user // 2) % 2]
        for _ in range(8):
            brand = loyal if rng.random() < 0.8 else brands[1 - brands.index(loyal)]
            n = min(int(rng.geometric(0.5)) - 1, ITEMS_PER_BRAND - 1)
            item = f"{category}-{brand}-{n}" if rng.random() < 0.95 else str(rng.choice(ids))
            rows.append((f"U{user:03d}", item, ts, 1, "view"))
            ts += 60
    events = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "ts": pa.array([r[2] for r in rows], pa.int64()),
            "qty": pa.array([r[3] for r in rows], pa.int32()),
            "event_type": [r[4] for r in rows],
        }
    )
    return events, catalog


@pytest.fixture(scope="module")
def model(shop: tuple[pa.Table, pa.Table]) -> LightFMModel:
    events, catalog = shop
    fitted = create_model("lightfm", PARAMS)
    fitted.threads = 1  # one thread makes LightFM's SGD, and so these tests, deterministic
    fitted.fit(events, catalog)
    assert isinstance(fitted, LightFMModel)
    return fitted


def test_cold_item_is_recommended_to_users_of_its_category(model: LightFMModel) -> None:
    cold = model.item_map.index(COLD)
    assert model.item_popularity[cold] == 0
    category = np.array([_category_of(i) for i in model.item_map.ids])
    coffee_users = np.flatnonzero([int(u[1:]) % 2 == 0 for u in model.user_map.ids])
    book_users = np.flatnonzero([int(u[1:]) % 2 == 1 for u in model.user_map.ids])
    scores = model.score_users(np.arange(len(model.user_map)))

    best_book = scores[:, category == "Books"].max(axis=1)
    assert (scores[coffee_users, cold] > best_book[coffee_users]).mean() >= 0.95
    top5 = [cold in model.recommend(model.user_map.ids[u], 5).items for u in coffee_users]
    assert np.mean(top5) >= 0.8

    # ...and not to users of the other category, who still have books to discover.
    book_top3 = [cold in model.recommend(model.user_map.ids[u], 3).items for u in book_users]
    assert np.mean(book_top3) <= 0.1


def test_cold_item_similar_items_share_its_category_and_brand(model: LightFMModel) -> None:
    similar = model.similar_items(COLD, 4)
    assert similar is not None
    neighbours = model.item_map.to_external(similar.items).tolist()
    assert all(_category_of(i) == "Coffee" for i in neighbours), neighbours
    assert sum("BeanCo" in i for i in neighbours) >= 3, neighbours


def test_a_new_user_is_folded_in_from_their_history(model: LightFMModel) -> None:
    books = model.item_map.to_index(["Books-Inkwell-0", "Books-Inkwell-1", "Books-Inkwell-0"])
    history = History(books, np.ones(3, dtype=np.float32), np.arange(3))
    ranked = model.recommend_history(history, 5, exclude=books)
    assert ranked is not None
    best = model.item_map.to_external(ranked.items).tolist()
    assert all(_category_of(i) == "Books" for i in best[:3]), best
    assert best[0].startswith("Books-Inkwell"), best


def test_vectors_reproduce_the_scores(model: LightFMModel) -> None:
    users = np.arange(10)
    scores = model.score_users(users)
    via_vectors = model.user_vectors(users) @ model.item_vectors().T
    np.testing.assert_allclose(via_vectors, scores, rtol=1e-5, atol=1e-5)
    assert scores.shape == (10, len(model.item_map)) and scores.dtype == np.float32


def test_round_trip_keeps_scores(model: LightFMModel, tmp_path: Path) -> None:
    model.build_indexes("flat")
    save_artifact(model, tmp_path / "lightfm")
    loaded = load_artifact(tmp_path / "lightfm").model
    assert isinstance(loaded, LightFMModel) and loaded.params == model.params
    users = np.arange(len(model.user_map))
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    history = model.history(5)
    np.testing.assert_array_equal(loaded.score_history(history), model.score_history(history))
    before, after = model.similar_items(COLD, 5), loaded.similar_items(COLD, 5)
    assert before is not None and after is not None
    assert before.items.tolist() == after.items.tolist()


def test_item_feature_matrix_columns() -> None:
    catalog = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "category": ["Coffee", "Coffee", "Books", None],
            "brand": ["BeanCo", "BeanCo", None, None],
            "price": pa.array([5.0, 7.0, 20.0, None], pa.float64()),
            "title": ["Dark Roast Beans", "light roast beans", "Dark Novel", None],
        }
    )
    features = item_features(catalog, 4, price_buckets=2, text_features=True, min_token_items=2)
    assert features.names.tolist() == [
        "item:a",
        "item:b",
        "item:c",
        "item:d",
        "category:Coffee",
        "category:Books",
        "brand:BeanCo",
        "price:0",
        "price:1",
        "title:beans",
        "title:dark",
        "title:roast",
    ]
    dense = features.matrix.toarray()
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, rtol=1e-6)
    column = {name: n for n, name in enumerate(features.names.tolist())}
    a = dense[0]
    # identity, category, brand and price count once each; the title's three words share one
    assert a[column["item:a"]] == pytest.approx(0.2)
    assert a[column["title:dark"]] == pytest.approx(0.2 / 3)
    assert dense[0, column["price:0"]] > 0 and dense[2, column["price:1"]] > 0
    assert "title:light" not in column and "title:novel" not in column  # in one title only
    assert np.flatnonzero(dense[3]).tolist() == [column["item:d"]]  # unknown to the catalog
    without_text = item_features(catalog, 4, price_buckets=0)
    assert not any(n.startswith(("title:", "price:")) for n in without_text.names.tolist())


@pytest.mark.parametrize("user_features", ["identity", "categories", "history+categories"])
def test_trains_without_a_catalog_and_with_other_user_features(
    shop: tuple[pa.Table, pa.Table], user_features: str
) -> None:
    events, _ = shop
    fitted = create_model("lightfm", {**PARAMS, "user_features": user_features}).fit(events)
    assert COLD not in fitted.item_map
    scores = fitted.score_history(fitted.history(0))
    assert scores is not None and np.isfinite(scores).all()
    assert len(fitted.recommend(fitted.user_map.ids[0], 5).items) == 5


def test_bpr_loss_trains(shop: tuple[pa.Table, pa.Table]) -> None:
    events, catalog = shop
    fitted = create_model("lightfm", {**PARAMS, "loss": "bpr"}).fit(events, catalog)
    assert np.isfinite(fitted.score_users(np.arange(3))).all()


def test_items_added_after_training_are_placed_like_cold_items(
    model: LightFMModel, shop: tuple[pa.Table, pa.Table]
) -> None:
    _, catalog = shop
    row = catalog.filter(pc.equal(catalog.column("item_id"), COLD))
    cold = model.item_map.index(COLD)
    np.testing.assert_allclose(
        model.content_vectors(row)[0], model.item_vectors()[cold], rtol=1e-5, atol=1e-6
    )
    grown = copy.deepcopy(model)
    twin = row.set_column(0, "item_id", pa.array(["NEW-TWIN"]))
    assert grown.add_items(["NEW-TWIN"], grown.content_vectors(twin)) == ["NEW-TWIN"]
    scores = grown.score_users(np.arange(len(grown.user_map)))
    np.testing.assert_allclose(scores[:, -1], scores[:, cold], rtol=1e-5, atol=1e-5)
    history = History(np.array([0, len(grown.item_map) - 1]), np.ones(2, np.float32), np.arange(2))
    folded = grown.score_history(history)
    assert folded is not None and folded.shape == (len(grown.item_map),)


def test_a_batch_of_items_adds_each_new_id_once_with_its_first_row(
    model: LightFMModel, shop: tuple[pa.Table, pa.Table]
) -> None:
    _, catalog = shop
    rows = catalog.slice(0, 2).set_column(0, "item_id", pa.array(["NEW-A", "NEW-B"]))
    vectors = model.content_vectors(rows)
    assert vectors is not None
    known = str(model.item_map.ids[0])
    batch = copy.deepcopy(model)
    added = batch.add_items(
        ["NEW-A", known, "NEW-B", "NEW-A"],
        np.stack([vectors[0], vectors[1], vectors[1], vectors[1]]),
    )
    assert added == ["NEW-A", "NEW-B"]
    one_by_one = copy.deepcopy(model)
    one_by_one.add_items(["NEW-A", "NEW-B"], vectors)
    batch_vectors, expected = batch.item_vectors(), one_by_one.item_vectors()
    assert batch_vectors is not None and expected is not None
    np.testing.assert_allclose(batch_vectors, expected)


def test_epoch_callback_sees_a_usable_model(shop: tuple[pa.Table, pa.Table]) -> None:
    events, catalog = shop
    fitted = create_model("lightfm", {**PARAMS, "epochs": 3})
    seen: list[tuple[int, bool]] = []
    fitted.epoch_callback = lambda epoch: seen.append(
        (epoch, bool(np.isfinite(fitted.score_users(np.arange(2))).all()))
    )
    fitted.fit(events, catalog)
    assert seen == [(0, True), (1, True), (2, True)]


@pytest.mark.parametrize("user_features", ["history", "categories", "history+categories"])
def test_adding_items_leaves_existing_fold_ins_alone(
    shop: tuple[pa.Table, pa.Table], user_features: str
) -> None:
    events, catalog = shop
    fitted = create_model("lightfm", {**PARAMS, "epochs": 3, "user_features": user_features})
    fitted.fit(events, catalog)
    n_items = len(fitted.item_map)
    before = fitted.score_history(fitted.history(0))
    twin = catalog.slice(0, 1).set_column(0, "item_id", pa.array(["LATE-ARRIVAL"]))
    fitted.add_items(["LATE-ARRIVAL"], fitted.content_vectors(twin))
    after = fitted.score_history(fitted.history(0))
    assert before is not None and after is not None and len(after) == n_items + 1
    np.testing.assert_allclose(after[:n_items], before, rtol=1e-6)


def test_history_features_describe_recent_items_and_categories() -> None:
    # user 0: items 1, 2, 1, 3, 4 (oldest first); user 1: item 5 twice with weight 0 and 1
    indptr = np.array([0, 5, 7])
    items = np.array([1, 2, 1, 3, 4, 5, 5])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    category = np.array([0, 0, 0, 1, 1, -1])
    rows = history_features(indptr, items, weights, category, 2, "history+categories", 3)
    dense = rows.toarray()
    assert dense.shape == (2, 6 + 2)
    np.testing.assert_allclose(dense.sum(axis=1), 1.0, rtol=1e-6)
    # the three most recently used distinct items; item 2 was last used before them
    assert np.flatnonzero(dense[0, :6]).tolist() == [1, 3, 4]
    assert dense[0, 1] > dense[0, 3]  # used twice, damped but still weightier
    assert dense[0, 6] > 0 and dense[0, 7] > 0  # categories count every event, item 2's too
    assert np.flatnonzero(dense[1]).tolist() == [5]  # no category for item 5
    only_items = history_features(indptr, items, weights, category, 2, "history", 50)
    assert only_items.shape == (2, 6) and only_items[0].nnz == 4
    assert history_features(indptr, items, weights, category, 2, "identity", 50).shape == (2, 0)
