"""The category page's answer (filter, diversity, explanations) is the textbook one: the fast
MMR and the bytes-built explanations give the same items, order and reasons as the plain
formulas, on a real ALS artifact and its catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from recsys_lite.config import Settings
from recsys_lite.ranking.diversity import diversify
from recsys_lite.ranking.explain import UserItems, explain
from recsys_lite.serving import lists
from recsys_lite.serving.runtime import ServingState
from recsys_lite.serving.schemas import RecommendQuery


def textbook_mmr(scores: np.ndarray, vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """Carbonell & Goldstein's loop, one candidate and one picked item at a time, relevance
    rescaled to [0, 1]."""
    low, high = float(scores.min()), float(scores.max())
    relevance = (scores - low) / (high - low) if high > low else np.ones(len(scores))
    similarity = (vectors @ vectors.T).astype(np.float64)
    chosen: list[int] = []
    while len(chosen) < min(k, len(scores)):
        best, best_value = -1, -np.inf
        for c in range(len(scores)):
            if c in chosen:
                continue
            # an item unlike everything shown counts as dissimilar, never as a bonus
            closest = max([0.0, *(similarity[c, p] for p in chosen)])
            value = lam * relevance[c] - (1 - lam) * closest
            if value > best_value:
                best, best_value = c, value
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.8, 0.95])
def test_mmr_picks_what_the_textbook_loop_picks(lam: float) -> None:
    rng = np.random.default_rng(int(lam * 100))
    for _ in range(40):
        n = int(rng.integers(2, 40))
        vectors = rng.normal(size=(n, 8)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        # rounded scores: ties among candidates, broken by position in both
        scores = np.sort(np.round(rng.random(n), 1))[::-1]
        chosen = diversify(np.arange(n), scores, vectors, lam, None, 10).tolist()
        assert chosen == textbook_mmr(scores, vectors, lam, 10)


@pytest.fixture(scope="module")
def state(als_artifact: Path, shop_db: Path) -> ServingState:
    return ServingState.load(Settings(model_dir=als_artifact, db_path=shop_db))


def test_page_explanations_are_the_contributions_encoded(state: ServingState) -> None:
    model, catalog = state.model, state.catalog
    category = next(c for c in catalog.field("category").tolist() if c is not None)
    users = model.user_map.ids[:40].tolist()
    explained = 0
    for user_id in users:
        query = RecommendQuery.model_validate(
            {"user_id": user_id, "k": 8, "category": category, "diversity_lambda": 0.8,
             "explain": True, "explain_top_k": 3},
            context={"max_k": 100},
        )  # fmt: skip
        served = lists.recommend(state, query)
        assert served.extras is not None and len(served.extras) == len(served.ranked.items)
        assert all(catalog.field("category")[i] == category for i in served.ranked.items)
        if served.source == "popular":
            continue
        user = UserItems.from_model(model, model.user_map.index(user_id))

        def similarity_of(targets: np.ndarray, past: np.ndarray) -> np.ndarray:
            unit = model._unit_vectors()
            return np.asarray(unit[targets] @ unit[past].T)

        reasons = explain(model, user, served.ranked.items, 3, similarity_of)
        for extra, contributions in zip(served.extras, reasons, strict=True):
            because = [
                {
                    "item_id": str(model.item_map.ids[c.item]),
                    "title": catalog.title(c.item),
                    "similarity": c.similarity,
                    "contribution_pct": c.contribution_pct,
                }
                for c in contributions
            ]
            assert orjson.loads(b"{" + extra[1:] + b"}") == {
                "reason": "history",
                "because": because,
            }
            explained += bool(because)
    assert explained > 0
