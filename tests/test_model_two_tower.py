"""The two-tower model beyond the shared contract: its loss, cold items, new users, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recsys_lite.data import demo
from recsys_lite.errors import InvalidInputError
from recsys_lite.models import History, create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.models.two_tower import TwoTowerModel
from recsys_lite.models.two_tower_examples import Examples, history_bags, recency_weights
from recsys_lite.models.two_tower_net import (
    as_tensors,
    build_net,
    feature_tensors,
    in_batch_softmax_loss,
    item_tower,
    user_tower,
)

# torch is imported inside the tests that need it, after the model module: that module sets
# passive OpenMP waiting, which only takes effect if it runs before torch loads.

FAST = json.loads((Path(__file__).parent / "fast_params" / "two_tower.json").read_text())
SHOP = {"n_users": 600, "n_items": 400, "n_events": 20_000, "seed": 7}
N_COLD = 6


@pytest.fixture(scope="module")
def shop() -> demo.DemoShop:
    return demo.generate(**SHOP)


@pytest.fixture(scope="module")
def cold_items(shop: demo.DemoShop) -> list[str]:
    """Items with a fair number of events, one per category where possible, to be held back."""
    counts = pc.value_counts(shop.events.column("item_id")).to_pylist()
    busy = {row["values"] for row in counts if row["counts"] >= 20}
    chosen: dict[str, str] = {}
    for item_id, category in zip(
        shop.items.column("item_id").to_pylist(),
        shop.items.column("category").to_pylist(),
        strict=True,
    ):
        if item_id in busy and category not in chosen:
            chosen[category] = item_id
    return list(chosen.values())[:N_COLD]


@pytest.fixture(scope="module")
def model(shop: demo.DemoShop, cold_items: list[str]) -> TwoTowerModel:
    """Trained without any event of ``cold_items``, which stay in the catalog."""
    held_back = pc.is_in(shop.events.column("item_id"), value_set=pa.array(cold_items))
    events = shop.events.filter(pc.invert(held_back))
    fitted = create_model("two_tower", FAST)
    assert isinstance(fitted, TwoTowerModel)
    fitted.threads = 1  # small batches gain nothing from a second thread on a busy test box
    return fitted.fit(events, shop.items)


def catalog_column(model: TwoTowerModel, shop: demo.DemoShop, name: str) -> np.ndarray:
    """The catalog column for every item index of the model."""
    values = dict(
        zip(
            shop.items.column("item_id").to_pylist(),
            shop.items.column(name).to_pylist(),
            strict=True,
        )
    )
    return np.array([values[item_id] for item_id in model.item_map.ids])


def test_loss_matches_a_hand_computation() -> None:
    import torch

    rng = np.random.default_rng(0)
    users = rng.normal(size=(4, 3))
    items = rng.normal(size=(4, 3))
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    ids = np.array([7, 2, 7, 5])  # rows 0 and 2 share an item
    log_q = np.log(np.array([0.5, 0.1, 0.5, 0.2]))
    temperature = 0.2

    expected = []
    for row in range(4):
        logits = users[row] @ items.T / temperature - log_q
        keep = (ids != ids[row]) | (np.arange(4) == row)  # the same item again is no negative
        expected.append(np.log(np.exp(logits[keep]).sum()) - logits[row])
    loss = in_batch_softmax_loss(
        torch.tensor(users),
        torch.tensor(items),
        torch.tensor(ids),
        torch.tensor(log_q),
        temperature,
    )
    assert float(loss) == pytest.approx(float(np.mean(expected)), rel=1e-9)


def test_loss_without_repeats_is_plain_corrected_softmax() -> None:
    import torch

    rng = np.random.default_rng(1)
    users = torch.tensor(rng.normal(size=(5, 4)))
    items = torch.tensor(rng.normal(size=(5, 4)))
    log_q = torch.tensor(np.log(rng.uniform(0.01, 0.5, size=5)))
    logits = users @ items.T / 0.5 - log_q[None, :]
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    loss = in_batch_softmax_loss(users, items, torch.arange(5), log_q, 0.5)
    assert float(loss) == pytest.approx(float(expected), rel=1e-9)


def test_examples_see_only_the_users_earlier_events() -> None:
    users = np.array([0, 1, 0, 0, 1, 0])  # time-ordered events of two users
    items = np.array([10, 11, 12, 13, 14, 15])
    weights = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 4.0], dtype=np.float32)
    data = SimpleNamespace(event_users=users, event_items=items, event_weights=weights)
    examples = Examples(data, history_length=2, half_life=1.0)  # type: ignore[arg-type]
    # user 0's examples (targets 10, 12, 13, 15), then user 1's (targets 11, 14)
    assert examples.items.tolist() == [10, 12, 13, 15, 11, 14]
    owner, history, pooled = examples.histories(np.array([0, 1, 3, 4, 5]))
    # the first event of each user has no history, and no user sees another's events
    assert owner.tolist() == [1, 2, 2, 4]
    assert history.tolist() == [10, 12, 13, 11]
    # before target 15: 12 (weight 2, one event older, so halved) and 13 (weight 1), oldest first
    np.testing.assert_allclose(pooled, [1.0, 0.5, 0.5, 1.0])


def test_only_first_events_with_an_item_are_targets_unless_asked() -> None:
    data = SimpleNamespace(
        event_users=np.array([0, 0, 1, 0, 1]),
        event_items=np.array([5, 6, 5, 5, 5]),
        event_weights=np.ones(5, dtype=np.float32),
    )
    firsts = Examples(data, 3, 1.0, repeats=False)  # type: ignore[arg-type]
    assert firsts.items[firsts.targets].tolist() == [5, 6, 5]
    # the repeat still counts as history for later targets
    everything = Examples(data, 3, 1.0, repeats=True)  # type: ignore[arg-type]
    assert len(everything) == 5 and len(firsts) == 3


def test_history_bags_merge_repeated_codes() -> None:
    from recsys_lite.models.two_tower import ItemFeatures

    features = ItemFeatures(
        category=np.array([1, 1, 2]), brand=np.array([3, 4, 4]), price=np.array([0, 0, 1])
    )
    owner = np.array([0, 0, 0, 1])
    items = np.array([0, 1, 0, 2])
    bags = history_bags(owner, items, np.array([0.25, 0.25, 0.5, 1.0]), 2, features)
    codes, weights, offsets = bags["history_item"]
    assert offsets.tolist() == [0, 2]
    assert dict(zip(codes[:2].tolist(), weights[:2].tolist(), strict=True)) == {0: 0.75, 1: 0.25}
    codes, weights, offsets = bags["category"]
    assert codes.tolist() == [1, 2] and weights.tolist() == [1.0, 1.0]


def test_recency_weights_favour_recent_and_heavy_events() -> None:
    weights = recency_weights(
        np.array([1.0, 1.0, 8.0, 1.0]), np.array([3.0, 2.0, 1.0, 0.0]), np.ones(4, bool), 2.0
    )
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] > weights[0] and weights[2] == weights.max()


def test_cold_catalog_items_sit_with_their_category_and_brand(
    model: TwoTowerModel, shop: demo.DemoShop, cold_items: list[str]
) -> None:
    category = catalog_column(model, shop, "category")
    brand = catalog_column(model, shop, "brand")
    vectors = model.similarity_vectors()
    assert vectors is not None
    assert len(cold_items) >= 4
    brand_margins = []
    for item_id in cold_items:
        item = model.item_map.index(item_id)
        assert model.item_popularity[item] == 0, "held back from training"
        assert np.linalg.norm(model.item_vectors()[item]) == pytest.approx(1.0, abs=1e-5)
        similar = model.similar_items(item_id, 10, use_index=False)
        assert similar is not None
        assert np.mean(category[similar.items] == category[item]) >= 0.8, item_id
        cosine = vectors @ vectors[item]
        others = np.arange(len(cosine)) != item
        same_brand = others & (brand == brand[item])
        same_category = others & (category == category[item]) & (brand != brand[item])
        elsewhere = category != category[item]
        assert cosine[same_category].mean() > cosine[elsewhere].mean() + 0.05
        brand_margins.append(cosine[same_brand].mean() - cosine[same_category].mean())
    # Brands sit inside categories in the demo shop, and only brand-loyal shoppers (a quarter
    # of events) tell them apart: a small margin, but it must be there on the whole.
    assert np.mean(brand_margins) > 0, brand_margins


def test_a_new_user_who_browsed_one_category_gets_that_category(
    model: TwoTowerModel, shop: demo.DemoShop
) -> None:
    category = catalog_column(model, shop, "category")
    shares = []
    for name in np.unique(category):
        members = np.flatnonzero(category == name)
        browsed = members[np.argsort(-model.item_popularity[members])[:5]]
        history = History(browsed, np.ones(len(browsed), dtype=np.float32), np.arange(len(browsed)))
        ranked = model.recommend_history(history, 10, exclude=browsed)
        assert ranked is not None and len(ranked.items) == 10
        shares.append(np.mean(category[ranked.items] == name))
    assert np.mean(shares) >= 0.75 and min(shares) >= 0.6, shares


def test_numpy_towers_serve_what_the_torch_towers_trained(model: TwoTowerModel) -> None:
    """Serving runs both towers in numpy; they must agree with the torch towers they mirror."""
    import torch

    net = build_net(len(model.user_map), len(model.item_map), model.encoder.sizes(), model.params)
    net.load_state_dict({name: torch.from_numpy(array) for name, array in model.net.items()})
    net.eval()
    users = np.arange(0, len(model.user_map), 37)
    window = model.params.history_length
    owner, items, weights = [], [], []
    for row, user in enumerate(users):
        history = model.history(user)
        recent = history.items[-window:]
        owner.append(np.full(len(recent), row))
        items.append(recent)
        ages = np.arange(len(recent))[::-1].astype(float)
        valid = np.ones(len(recent), bool)
        half_life = model.params.recency_half_life
        weights.append(recency_weights(history.weights[-window:], ages, valid, half_life))
    bags = history_bags(
        np.concatenate(owner),
        np.concatenate(items),
        np.concatenate(weights),
        len(users),
        model.features,
    )
    every = np.arange(len(model.item_map))
    warm = model.item_popularity > 0
    with torch.no_grad():
        user_vectors = user_tower(net, torch.from_numpy(users), as_tensors(bags)).numpy()
        item_vectors = item_tower(
            net,
            torch.from_numpy(np.where(warm, every, len(every))),
            feature_tensors(model.features),
        ).numpy()
    np.testing.assert_allclose(model.user_vectors(users), user_vectors, atol=1e-5)
    np.testing.assert_allclose(model.item_vectors(), item_vectors, atol=1e-5)


def test_scores_are_the_inner_product_of_the_vectors(model: TwoTowerModel) -> None:
    users = np.array([0, 5, 9])
    np.testing.assert_allclose(
        model.score_users(users), model.user_vectors(users) @ model.item_vectors().T, rtol=1e-6
    )


def test_save_and_load_keep_every_score(model: TwoTowerModel, tmp_path: Path) -> None:
    model.build_indexes("flat")
    save_artifact(model, tmp_path / "model")
    loaded = load_artifact(tmp_path / "model").model
    assert isinstance(loaded, TwoTowerModel)
    users = np.arange(len(model.user_map))
    np.testing.assert_array_equal(loaded.score_users(users), model.score_users(users))
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    for user in (0, 17, 42):
        before, after = (
            model.score_history(model.history(user)),
            loaded.score_history(model.history(user)),
        )
        assert before is not None and after is not None
        np.testing.assert_allclose(after, before, rtol=1e-6)
        user_id = model.user_map.ids[user]
        assert (
            loaded.recommend(user_id, 10).items.tolist()
            == model.recommend(user_id, 10).items.tolist()
        )


def test_serving_a_saved_model_does_not_import_torch(model: TwoTowerModel, tmp_path: Path) -> None:
    save_artifact(model, tmp_path / "model")
    script = f"""
import sys
import numpy as np
from recsys_lite.models import History
from recsys_lite.models.artifact import load_artifact
model = load_artifact({str(tmp_path / "model")!r}).model
model.recommend(model.user_map.ids[0], 10)
assert model.recommend_history(History(np.array([1, 2]), np.ones(2), np.arange(2)), 5)
assert "torch" not in sys.modules, "serving imported torch"
"""
    subprocess.run([sys.executable, "-c", script], check=True)


def test_an_empty_history_falls_back(model: TwoTowerModel) -> None:
    empty = History(np.zeros(0, dtype=np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert model.score_history(empty) is None


def test_history_longer_than_what_is_kept_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="history_length"):
        create_model("two_tower", {"history_length": 500})


def test_content_vectors_place_items_as_training_placed_cold_ones(
    model: TwoTowerModel, shop: demo.DemoShop, cold_items: list[str]
) -> None:
    rows = shop.items.filter(pc.is_in(shop.items.column("item_id"), pa.array(cold_items)))
    vectors = model.content_vectors(rows)
    items = model.item_map.to_index(rows.column("item_id"))
    np.testing.assert_allclose(vectors, model.item_vectors()[items], atol=1e-6)


def test_items_added_after_training_are_found_near_their_category(
    model: TwoTowerModel, shop: demo.DemoShop, tmp_path: Path
) -> None:
    save_artifact(model, tmp_path / "model")
    served = load_artifact(tmp_path / "model").model
    template = shop.items.slice(0, 1).to_pylist()[0]
    row = pa.Table.from_pylist([{**template, "item_id": "NEW-1"}], schema=shop.items.schema)
    assert served.add_items(["NEW-1"], served.content_vectors(row)) == ["NEW-1"]
    category = catalog_column(model, shop, "category")
    similar = served.similar_items("NEW-1", 10, use_index=False)
    assert similar is not None
    assert np.mean(category[similar.items] == template["category"]) >= 0.8
    # and users whose history holds it are still served
    new = served.item_map.index("NEW-1")
    history = History(np.array([0, new]), np.ones(2, np.float32), np.arange(2))
    assert served.recommend_history(history, 5) is not None


def test_each_epoch_leaves_a_model_that_scores(shop: demo.DemoShop) -> None:
    model = create_model("two_tower", {**FAST, "epochs": 2})
    model.threads = 1
    seen: list[tuple[int, float]] = []

    def look(epoch: int) -> None:
        seen.append((epoch, float(np.abs(model.score_users(np.array([0]))).sum())))

    model.epoch_callback = look
    model.fit(shop.events, shop.items)
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert all(total > 0 for _, total in seen)
