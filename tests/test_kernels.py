"""The compiled kernels answer exactly what their numpy versions answer: explanations
(ranking/_reasons.c) the same past items, numbers and bytes for every kind of model, and
diversity (ranking/_mmr.c) the same picks in the same order, filtered retrieval
(models/_topk.c) the same items in the same order."""

from __future__ import annotations

import os

import numpy as np
import orjson
import pyarrow as pa
import pytest

from recsys_lite.models import create_model, retrieval
from recsys_lite.models.retrieval import exact_eligible
from recsys_lite.ranking import diversity, explain
from recsys_lite.ranking.diversity import diversify
from recsys_lite.ranking.explain import UserItems, als_contributions, reason_fields


def built(module: object, name: str) -> object:
    if module is None:
        reason = f"the {name} kernel is not built (no C compiler when installed)"
        if os.environ.get("RECSYS_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason} (RECSYS_REQUIRE_ALL=1 requires every component)")
        pytest.skip(reason)
    return module


@pytest.fixture(scope="module")
def kernel() -> object:
    return built(explain.kernel, "explanation")


@pytest.fixture(scope="module")
def topk_kernel() -> object:
    return built(retrieval.kernel, "top-k")


@pytest.fixture(scope="module")
def mmr_kernel() -> object:
    return built(diversity.kernel, "diversity")


def fragment_of(index: int) -> bytes:
    return b'{"item_id":"I%d"' % index


def both_ways(contributions: np.ndarray, similarity: np.ndarray, top_k: int) -> list[bytes]:
    items = np.arange(100, 100 + contributions.shape[1])
    numpy_fields = explain.encoded_reasons(
        explain.top_reasons(contributions, similarity, items, top_k), fragment_of
    )
    cache: dict[int, bytes] = {}
    kernel_fields: list[bytes] = explain.kernel.because_fields(  # type: ignore[union-attr]
        contributions, similarity, items.astype(np.int64), top_k, cache, fragment_of
    )
    assert kernel_fields == numpy_fields
    return kernel_fields


def test_ties_zeros_signs_and_rounding_are_written_alike(kernel: object) -> None:
    contributions = np.array(
        [
            [0.5, 0.5, 0.0, -1.0, 0.25],  # a tie keeps the earlier item first
            [0.0, 0.0, 0.0, 0.0, 0.0],  # nothing positive: no reasons
            [-2.0, 3.0, 1e-9, 2.0, 3.0],
            [1.0, 0.0, 0.0, 0.0, 0.0],  # one reason: 100.0
        ]
    )
    similarity = np.array(
        [
            [0.85530001, -0.00001, 1.0, -0.99995, 0.00005],
            [0.1, 0.2, 0.3, 0.4, 0.5],
            [np.nan, 0.12345, 0.0001, -0.5, 0.66666],
            [1.0, 0.0, 0.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    fields = both_ways(contributions, similarity, 3)
    first = orjson.loads(b"{" + fields[0][1:] + b"}")["because"]
    assert [r["item_id"] for r in first] == ["I100", "I101", "I104"]
    assert [r["contribution_pct"] for r in first] == [40.0, 40.0, 20.0]
    assert first[0]["similarity"] == 0.8553  # float64 rounding, not float32 noise
    assert fields[1] == b',"reason":"history","because":[]'
    third = orjson.loads(b"{" + fields[2][1:] + b"}")["because"]
    assert [r["item_id"] for r in third] == ["I101", "I104", "I103"]
    assert third[0]["similarity"] == 0.1235 or third[0]["similarity"] == 0.1234
    assert b'"contribution_pct":100.0}' in fields[3]


def test_random_rows_are_written_alike(kernel: object) -> None:
    rng = np.random.default_rng(7)
    for n, top_k in [(1, 3), (7, 3), (40, 10), (200, 5)]:
        contributions = rng.normal(size=(10, n))
        contributions[:, rng.random(n) < 0.2] = 0.0
        similarity = rng.uniform(-1, 1, size=(10, n)).astype(np.float32)
        both_ways(contributions, similarity, top_k)
        both_ways(contributions.astype(np.float32), similarity.astype(np.float64), top_k)


def test_als_woodbury_kernel_matches_the_numpy_form(kernel: object, events: pa.Table) -> None:
    model = create_model("als", {"iterations": 6, "factors": 32}).fit(events)
    checked = 0
    for user in range(model.user_items.shape[0]):
        past = UserItems.from_model(model, user)
        if not 0 < len(past.items) < 32:  # the kernel's side of the Woodbury switch
            continue
        targets = model.recommend(str(model.user_map.ids[user]), 10).items
        compiled = als_contributions(model, past, targets)
        reference = als_contributions(model, past, targets, use_kernel=False)
        # float64 in both, summed in different orders from float32 rows
        assert np.abs(compiled - reference).max() <= 1e-5 * np.abs(reference).max()
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    ("kind", "params"),
    [("als", {"iterations": 6, "factors": 16}), ("ease", {"l2": 100}), ("bpr", {"iterations": 20})],
)
def test_served_explanations_are_the_same_either_way(
    kernel: object, events: pa.Table, kind: str, params: dict[str, object]
) -> None:
    model = create_model(kind, params).fit(events)
    unit = model._unit_vectors()
    if unit is None:
        unit = np.eye(len(model.item_map), dtype=np.float32)

    def similarity_of(targets: np.ndarray, past: np.ndarray) -> np.ndarray:
        return np.asarray(unit[targets] @ unit[past].T)

    histories = 0
    for user in range(0, model.user_items.shape[0], 3):
        past = UserItems.from_model(model, user)
        targets = model.recommend(str(model.user_map.ids[user]), 10).items
        compiled = reason_fields(model, past, targets, 3, similarity_of, {}, fragment_of)
        reference = reason_fields(
            model, past, targets, 3, similarity_of, {}, fragment_of, use_kernel=False
        )
        assert compiled == reference
        histories += len(past.items) >= 16  # both sides of ALS's Woodbury switch
    assert histories > 0


def test_mmr_kernel_picks_what_the_numpy_loop_picks(mmr_kernel: object) -> None:
    rng = np.random.default_rng(11)
    for n, k, f in [(2, 1, 3), (30, 10, 64), (60, 20, 8), (300, 50, 32), (5, 5, 16)]:
        for lam in (0.0, 0.3, 0.5, 0.8, 0.99):
            vectors = rng.normal(size=(n, f)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            scores = np.sort(rng.gamma(2.0, size=n))[::-1].astype(np.float32)
            candidates = np.arange(n)
            compiled = diversify(candidates, scores, vectors, lam, None, k)
            reference = diversify(candidates, scores, vectors, lam, None, k, use_kernel=False)
            assert compiled.tolist() == reference.tolist()
            assert len(set(compiled.tolist())) == k


def test_mmr_kernel_on_a_models_own_vectors(mmr_kernel: object, events: pa.Table) -> None:
    model = create_model("als", {"iterations": 6, "factors": 32}).fit(events)
    unit = model._unit_vectors()
    differs = 0
    for user in range(0, model.user_items.shape[0], 7):
        ranked = model.recommend(str(model.user_map.ids[user]), 30)
        vectors = unit[ranked.items]
        compiled = diversify(ranked.items, ranked.scores, vectors, 0.8, None, 10)
        reference = diversify(ranked.items, ranked.scores, vectors, 0.8, None, 10, use_kernel=False)
        assert compiled.tolist() == reference.tolist()
        differs += compiled.tolist() != list(range(10))
    assert differs > 0  # diversity changed some lists, so the comparison covered MMR's picks


def test_topk_kernel_selects_what_numpy_selects(topk_kernel: object) -> None:
    rng = np.random.default_rng(5)
    for n, k in [(0, 10), (1, 10), (9, 10), (10, 10), (500, 10), (3000, 30), (3000, 0)]:
        rows = rng.normal(size=(n, 8)).astype(np.float32)
        rows[rng.random(n) < 0.1] = rows[0] if n else 0  # exact ties
        query = rng.normal(size=8).astype(np.float32)
        indices = np.sort(rng.choice(10 * max(n, 1), size=n, replace=False)).astype(np.int64)
        # in no order, with repeats and items that are not candidates
        excluded = np.concatenate(
            [rng.choice(indices, size=min(n, 40)) if n else [], [10**9, -5]]
        ).astype(np.int64)
        compiled = exact_eligible(rows, query, k, indices, excluded)
        reference = exact_eligible(rows, query, k, indices, excluded, use_kernel=False)
        assert compiled[0].tolist() == reference[0].tolist()
        assert compiled[1].tolist() == reference[1].tolist()
        assert len(compiled[0]) == min(k, n - len(np.intersect1d(indices, excluded)))
        assert not set(compiled[0].tolist()) & set(excluded.tolist())
        assert compiled[1].tolist() == sorted(compiled[1].tolist(), reverse=True)


def test_topk_kernel_leaves_out_what_cannot_be_ranked(topk_kernel: object) -> None:
    rows = np.array([[1.0], [np.inf], [np.nan], [2.0], [-np.inf]], dtype=np.float32)
    items, scores = exact_eligible(
        rows, np.ones(1, dtype=np.float32), 5, np.arange(5), np.zeros(0, dtype=np.int64)
    )
    assert items.tolist() == [3, 0] and scores.tolist() == [2.0, 1.0]


def test_edge_inputs_found_in_review_answer_alike(
    kernel: object, topk_kernel: object, mmr_kernel: object
) -> None:
    # a row total summed in another order moved a share rounded at x.x5 (31.2 against 31.3)
    both_ways(np.array([[0.2, 0, 0, 0, 0, 0.5, 0.4, 0.5]]), np.zeros((1, 8)), 1)
    # a similarity too large to scale by 10^4 is null in JSON, not inf
    with np.errstate(over="ignore"):  # numpy's rounding overflows there, as it should
        fields = both_ways(np.array([[1.0, 2.0, 0.5]]), np.array([[1e305, 1e16, -1e20]]), 3)
    assert b"inf" not in fields[0] and b'"similarity":null' in fields[0]
    # ties at the k-th place go to the earlier item; an item scored +inf is not ranked
    for rows, k, expected in [
        ([[0], [0], [1], [1]], 1, [2]),
        ([[1], [np.inf], [2], [3]], 2, [3, 2]),
    ]:
        for use_kernel in (True, False):
            items, _ = exact_eligible(
                np.array(rows, dtype=np.float32), np.ones(1, dtype=np.float32), k,
                np.arange(len(rows)), np.zeros(0, dtype=np.int64), use_kernel=use_kernel,
            )  # fmt: skip
            assert items.tolist() == expected


def test_the_kernels_refuse_what_they_would_misread(mmr_kernel: object) -> None:
    picks = np.empty(2, dtype=np.int64)
    # relevance all -inf (a lambda the API refuses) still picks distinct candidates
    diversity.kernel.mmr(  # type: ignore[union-attr]
        np.ones(4, dtype=np.float32), np.eye(4, dtype=np.float32), float("-inf"), picks
    )
    assert sorted(set(picks.tolist())) == sorted(picks.tolist())
    assert all(0 <= p < 4 for p in picks.tolist())
    with pytest.raises(TypeError):  # big-endian floats would be read as garbage
        retrieval.kernel.top_positions(  # type: ignore[union-attr]
            np.ones(5, dtype=">f4"), np.arange(5), np.zeros(0, dtype=np.int64), picks
        )
    with pytest.raises(IndexError):
        explain.kernel.woodbury_contributions(  # type: ignore[union-attr]
            np.ones((3, 2), dtype=np.float32), np.ones((3, 2), dtype=np.float32),
            np.array([0, 7]), np.ones(2), np.array([1]), np.empty((1, 2)),
        )  # fmt: skip


def test_a_singular_woodbury_system_is_answered_through_the_factors_own(
    kernel: object, events: pa.Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("als", {"iterations": 6, "factors": 32}).fit(events)
    past = UserItems.from_model(model, 5)
    assert 0 < len(past.items) < 32  # the Woodbury side, where the kernel answers
    targets = model.recommend(str(model.user_map.ids[5]), 5).items
    reference = als_contributions(model, past, targets, use_kernel=False)

    class Singular:
        @staticmethod
        def woodbury_contributions(*args: object) -> None:
            raise ArithmeticError("woodbury_contributions: singular system")

    monkeypatch.setattr(explain, "kernel", Singular)
    answered = als_contributions(model, past, targets)
    assert np.abs(answered - reference).max() <= 1e-5 * np.abs(reference).max()
