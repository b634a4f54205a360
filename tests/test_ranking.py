"""Diversity re-ranking and explanations, on small hand-made inputs and on real models."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.models import create_model
from recsys_lite.ranking.diversity import content_vectors, diversify, intra_list_diversity
from recsys_lite.ranking.explain import UserItems, als_contributions, explain

# items 0 and 1 are near-duplicates, 2 and 3 point elsewhere
VECTORS = np.array([[1, 0, 0], [0.99, 0.141, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
SCORES = np.array([4.0, 3.9, 3.0, 1.0])
CANDIDATES = np.array([10, 11, 12, 13])


def test_lambda_one_keeps_the_models_order() -> None:
    assert diversify(CANDIDATES, SCORES, VECTORS, 1.0, None, 3).tolist() == [0, 1, 2]


def test_mmr_skips_a_near_duplicate_of_what_is_already_shown() -> None:
    assert diversify(CANDIDATES, SCORES, VECTORS, 0.5, None, 3).tolist() == [0, 2, 3]
    # a little variety only breaks near-ties: 3.9 against 3.0 still wins at 0.8
    assert diversify(CANDIDATES, SCORES, VECTORS, 0.8, None, 2).tolist()[0] == 0


def test_the_category_cap_holds_and_lower_items_fill_in() -> None:
    categories = np.array(["a", "a", "a", None], dtype=object)
    chosen = diversify(CANDIDATES, SCORES, None, 1.0, 1, 4, categories)
    assert chosen.tolist() == [0, 3]  # items without a category are never capped
    categories = np.array(["a", "a", "b", "b"], dtype=object)
    assert diversify(CANDIDATES, SCORES, None, 1.0, 1, 4, categories).tolist() == [0, 2]


def test_intra_list_diversity() -> None:
    share, distance = intra_list_diversity(VECTORS[[0, 2, 3]], np.array(["a", "b", "b"]))
    assert share == pytest.approx(2 / 3)
    assert distance == pytest.approx(1.0)  # orthogonal vectors
    share, distance = intra_list_diversity(VECTORS[[0, 0]], np.array([None, None]))
    assert share is None and distance == pytest.approx(0.0, abs=1e-6)


def test_content_vectors_share_half_for_category_and_half_for_brand() -> None:
    vectors = content_vectors(
        np.array(["a", "a", "b", None], dtype=object), np.array(["x", "y", "x", None], dtype=object)
    )
    similarity = vectors @ vectors.T
    assert similarity[0, 1] == pytest.approx(0.5) and similarity[0, 2] == pytest.approx(0.5)
    assert similarity[0, 0] == pytest.approx(1.0) and similarity[3].max() == 0


def cosine_of(model: object) -> object:
    unit = model._unit_vectors()  # type: ignore[attr-defined]

    def similarity_of(targets: np.ndarray, past: np.ndarray) -> np.ndarray:
        return np.asarray(unit[targets] @ unit[past].T)

    return similarity_of


def test_ease_explanations_are_its_score_split_by_past_item(events: pa.Table) -> None:
    model = create_model("ease", {"l2": 100}).fit(events)
    user = 3
    past = UserItems.from_model(model, user)
    ranked = model.recommend(str(model.user_map.ids[user]), 5)
    reasons = explain(model, past, ranked.items, len(past.items), lambda a, b: np.zeros(1))
    weights = np.asarray(model.weights)  # type: ignore[attr-defined]
    for target, contributions in zip(ranked.items.tolist(), reasons, strict=True):
        parts = weights[past.items, target]
        positive = np.maximum(parts, 0).sum()
        assert sum(c.contribution_pct for c in contributions) == pytest.approx(100, abs=0.5)
        best = contributions[0]
        assert best.similarity == pytest.approx(parts.max(), abs=1e-4)
        assert best.contribution_pct == pytest.approx(100 * parts.max() / positive, abs=0.06)
    # the parts add up to the score the model served
    total = weights[past.items][:, ranked.items].sum(axis=0)
    assert np.allclose(total, ranked.scores, atol=1e-4)


def test_als_explanations_are_implicits_exact_decomposition(events: pa.Table) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    model = create_model("als", {"iterations": 6, "factors": 32}).fit(events)
    user = 5
    past = UserItems.from_model(model, user)
    targets = model.recommend(str(model.user_map.ids[user]), 4).items
    reasons = explain(model, past, targets, 3, cosine_of(model))  # type: ignore[arg-type]
    reference = AlternatingLeastSquares(
        factors=32, regularization=model.params.regularization,  # type: ignore[attr-defined]
        alpha=model.params.alpha,  # type: ignore[attr-defined]
    )  # fmt: skip
    reference.item_factors = model.item_factors  # type: ignore[attr-defined]
    every = als_contributions(model, past, targets)
    position = {item: n for n, item in enumerate(past.items.tolist())}
    for t, (target, contributions) in enumerate(zip(targets.tolist(), reasons, strict=True)):
        total, top, _ = reference.explain(user, model.user_items, target, N=len(past.items))
        assert every[t].sum() == pytest.approx(total, rel=1e-4)
        for item, value in top:
            assert every[t, position[item]] == pytest.approx(value, rel=1e-4, abs=1e-6)
        assert [c.item for c in contributions] == [item for item, v in top[:3] if v > 0]
        assert all(-1.0001 <= c.similarity <= 1.0001 for c in contributions)
        shares = [c.contribution_pct for c in contributions]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.05
