"""EASE against a direct numpy computation of its closed form."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.data import demo
from recsys_lite.errors import InvalidInputError
from recsys_lite.models import create_model
from recsys_lite.models import ease as ease_module
from recsys_lite.models.ease import EASEModel, spd_inverse
from recsys_lite.models.types import History
from recsys_lite.training import holdout_metrics

# rows are users, columns items; a few users share baskets so B has structure
MATRIX = np.array(
    [
        [1, 1, 0, 0, 0, 1],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 0],
        [0, 0, 1, 1, 1, 0],
        [1, 0, 0, 0, 1, 1],
        [0, 1, 0, 1, 0, 1],
    ]
)


def events_of(matrix: np.ndarray) -> pa.Table:
    users, items = np.nonzero(matrix)
    return pa.table(
        {
            "user_id": [f"u{u}" for u in users],
            "item_id": [f"i{i}" for i in items],
            "ts": np.arange(len(users), dtype=np.int64) + 1_700_000_000,
            "qty": np.ones(len(users), dtype=np.int32),
            "event_type": ["view"] * len(users),
        }
    )


def closed_form(matrix: np.ndarray, l2: float) -> np.ndarray:
    x = matrix.astype(np.float64)
    precision = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def fitted_ease(l2: float) -> tuple[EASEModel, np.ndarray, np.ndarray]:
    """The model plus the reference B and X in the model's own user and item order."""
    model = create_model("ease", {"l2": l2}).fit(events_of(MATRIX))
    assert isinstance(model, EASEModel)
    item_order = [int(i[1:]) for i in model.item_map.ids]
    user_order = [int(u[1:]) for u in model.user_map.ids]
    x = MATRIX[np.ix_(user_order, item_order)]
    return model, closed_form(x, l2), x


@pytest.mark.parametrize("l2", [0.5, 3.0, 50.0])
def test_weights_match_the_closed_form(l2: float) -> None:
    model, expected, x = fitted_ease(l2)
    assert model.weights.dtype == np.float32
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-5)
    assert np.all(np.diag(model.weights) == 0.0)
    users = np.arange(x.shape[0])
    np.testing.assert_allclose(model.score_users(users), x @ expected, rtol=1e-4, atol=1e-5)


def test_history_fold_in_and_similar_items_use_the_same_weights() -> None:
    model, expected, _ = fitted_ease(3.0)
    history = History(
        items=np.array([0, 2, 2]),  # repeated events count once: the model is binary
        weights=np.array([1.0, 4.0, 8.0], dtype=np.float32),
        ts=np.arange(3),
    )
    scores = model.score_history(history)
    assert scores is not None
    np.testing.assert_allclose(scores, expected[0] + expected[2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.score_similar(4), expected[4], rtol=1e-4, atol=1e-5)
    assert model.score_similar(4)[4] == 0.0, "an item never recommends itself"


def test_inverse_is_symmetric_across_mirroring_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ease_module, "_MIRROR_BLOCK", 7)  # several blocks and a ragged last one
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(30, 12))
    matrix = factors @ factors.T + 5.0 * np.eye(30)
    inverse = spd_inverse(matrix.astype(np.float32))
    np.testing.assert_allclose(inverse, np.linalg.inv(matrix), rtol=1e-4, atol=1e-6)
    assert np.array_equal(inverse, inverse.T)


def test_too_many_items_are_refused_before_any_work() -> None:
    model = create_model("ease", {"max_items": 5})
    with pytest.raises(InvalidInputError, match=r"6 items.*max_items=5"):
        model.fit(events_of(MATRIX))


def test_weighted_mode_learns_from_event_weights() -> None:
    events = events_of(MATRIX)
    purchases = pa.array(["purchase" if i % 3 == 0 else "view" for i in range(events.num_rows)])
    events = events.set_column(4, "event_type", purchases)
    binary = create_model("ease", {"l2": 3.0}).fit(events)
    weighted = create_model("ease", {"l2": 3.0, "binary": False}).fit(events)
    assert isinstance(binary, EASEModel) and isinstance(weighted, EASEModel)
    assert not np.allclose(binary.weights, weighted.weights)
    user = 0
    folded = weighted.score_history(weighted.history(user))
    assert folded is not None
    np.testing.assert_allclose(folded, weighted.score_users(np.array([user]))[0], rtol=1e-5)


def test_ease_beats_popularity_on_a_demo_shop() -> None:
    shop = demo.generate(n_users=600, n_items=400, n_events=20_000, seed=7)
    ease = holdout_metrics("ease", None, shop.events)["metrics"]["ndcg@10"]
    popular = holdout_metrics("popular", None, shop.events)["metrics"]["ndcg@10"]
    assert ease > popular * 1.5, (ease, popular)
