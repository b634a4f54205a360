"""The second stage: fresh counters agree online and offline, candidates keep each source's
rank, the ranker's features never see its labels, and it serves a retriever when it loses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("lightgbm")

from fresh_counts import COUNTED, events_after_training, newest_ts, offline_item_counts
from recsys_lite.models import create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.ranking.candidates import CoVisitation, merge, recall_by_source
from recsys_lite.ranking.features import FRESH_WINDOWS, EventCounts, FreshCounters, fresh_features
from recsys_lite.ranking.ranker import RankerModel

FAST = json.loads((Path(__file__).parent / "fast_params" / "ranker.json").read_text())


def test_online_counters_agree_with_the_offline_definition_at_every_instant() -> None:
    """Replay a burst of events (some out of order, as replicas deliver them) into the online
    counters; at each instant the offline counts over the table of events so far match."""
    rng = np.random.default_rng(3)
    n = 3_000
    ts = 1_700_000_000 + np.sort(rng.integers(0, 3 * 86_400, n))
    ts[::17] -= rng.integers(0, 600, len(ts[::17]))  # late arrivals, up to 10 minutes
    users = rng.integers(0, 40, n)
    items = rng.integers(0, 60, n)
    online = FreshCounters()
    checked = 0
    for k in range(n):
        online.observe(f"u{users[k]}", f"i{items[k]}", int(ts[k]))
        if k % 97:
            continue
        at = int(ts[: k + 1].max())
        user, some_items = users[k], np.arange(60)
        offline = _offline(users[: k + 1], items[: k + 1], ts[: k + 1], user, some_items, at)
        live = online.features(f"u{user}", [f"i{i}" for i in some_items], at)
        for name, values in offline.items():
            np.testing.assert_array_equal(live[name], values, err_msg=name)
        checked += 1
    assert checked > 20
    assert offline["item_events_1d"].sum() > offline["item_events_1h"].sum() > 0


def _offline(
    users: np.ndarray, items: np.ndarray, ts: np.ndarray, user: int, wanted: np.ndarray, at: int
) -> dict[str, np.ndarray]:
    by_user, by_item = EventCounts(users, ts), EventCounts(items, ts)
    return fresh_features(
        lambda w: by_user.count(np.full(len(wanted), user), at, w),
        lambda w: by_item.count(wanted, at, w),
    )


def test_a_window_counts_events_after_its_start_up_to_and_including_the_instant() -> None:
    counts = EventCounts(np.array([0, 0, 0, 1]), np.array([100, 400, 401, 400]))
    five_minutes = FRESH_WINDOWS["5m"]
    assert counts.count(np.array([0, 1, 7]), 400, five_minutes).tolist() == [1, 1, 0]
    assert counts.count(np.array([0]), 401, five_minutes).tolist() == [2]
    assert counts.count(np.array([0]), 99, five_minutes).tolist() == [0]


def test_merged_candidates_keep_each_sources_rank_and_score() -> None:
    first = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0], dtype=np.float32)
    second = np.array([0.0, 0.0, 0.0, 0.0, 9.0, 8.0], dtype=np.float32)
    found = merge([first, second], 2, excluded=np.array([0]))
    assert found.items.tolist() == [1, 2, 4, 5]  # item 0 excluded, so the first gives 1 and 2
    assert found.ranks.tolist() == [[1, 3], [2, 3], [3, 1], [3, 2]]
    assert found.scores[2, 1] == 9.0 and np.isnan(found.scores[2, 0])
    recall = recall_by_source([found], [np.array([2, 5, 3])], ["first", "second"])
    assert recall == pytest.approx({"first": 1 / 3, "second": 1 / 3, "merged": 2 / 3})


def test_bought_together_favours_items_shared_with_the_recent_ones() -> None:
    import scipy.sparse as sp

    # users 0-2 had items 0 and 1; user 3 had items 0 and 2
    matrix = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0], [1, 0, 1]]))
    scores = CoVisitation.build(matrix, None).scores(np.array([1]))
    assert scores[0] > scores[2] == 0.0


@pytest.mark.parametrize("recent", [[7, 7, 30], list(range(40))])
def test_bought_together_scores_equal_the_two_sparse_products(recent: list[int]) -> None:
    """The per-request shortcut (gathering only the users who had a recent item, or one
    product when that is most of the matrix) gives exactly the definition's numbers."""
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    popular = rng.zipf(1.5, 4_000) % 60
    matrix = sp.csr_matrix((np.ones(4_000), (rng.integers(0, 300, 4_000), popular)), (300, 60))
    binary = (matrix > 0).astype(np.float32)
    wanted = np.array(recent)
    users = np.asarray(binary[:, wanted].sum(axis=1)).ravel()
    together = binary.T @ users / np.sqrt(np.asarray(binary.sum(axis=0)).ravel() + 1.0)
    got = CoVisitation.build(matrix, None).scores(wanted)
    np.testing.assert_allclose(got, together, rtol=1e-6)
    assert got.max() > 0


def test_ranker_features_never_see_the_events_it_learns_from(
    events: pa.Table, items: pa.Table
) -> None:
    """Whatever users chose after the cut, the features at the cut are the same: shuffling the
    later events' items changes the labels only."""
    model = RankerModel(FAST).fit(events, items)
    cut = model.validation["cut_ts"]
    ts = events.column("ts").to_numpy()
    before = events.filter(pa.array(ts <= cut))
    after = events.filter(pa.array(ts > cut))
    assert before.num_rows and after.num_rows
    assert pc.max(before.column("ts")).as_py() < pc.min(after.column("ts")).as_py()
    shuffled_items = np.random.default_rng(0).permutation(after.column("item_id").to_numpy())
    shuffled = after.set_column(
        after.column_names.index("item_id"), "item_id", pa.array(shuffled_items)
    )
    real = model.training_examples(before, after, items)
    other = model.training_examples(before, shuffled, items)
    assert real is not None and other is not None
    assert real.instant <= cut
    rows = dict(zip(real.user_ids.tolist(), real.rows, strict=True))
    both = [n for n, user in enumerate(other.user_ids.tolist()) if user in rows]
    assert len(both) >= len(real.user_ids) // 2
    for n in both:
        found, features = other.rows[n]
        same_user = rows[other.user_ids[n]]
        np.testing.assert_array_equal(same_user[0].items, found.items)
        np.testing.assert_array_equal(same_user[1], features)
    assert any(not np.array_equal(a, b) for a, b in zip(real.labels, other.labels, strict=False)), (
        "the shuffled labels should differ"
    )


def test_ranker_round_trips_and_reports_what_it_serves(
    events: pa.Table, items: pa.Table, tmp_path: Path
) -> None:
    model = create_model("ranker", FAST).fit(events, items)
    assert isinstance(model, RankerModel)
    validation = model.validation
    assert validation["served"] in ["ranker", *model.source_names()]
    assert set(validation["recall_at_n"]) == {*model.source_names(), "merged"}
    assert validation["recall_at_n"]["merged"] >= max(
        v for k, v in validation["recall_at_n"].items() if k != "merged"
    )
    save_artifact(model, tmp_path / "m")
    loaded = load_artifact(tmp_path / "m").model
    assert isinstance(loaded, RankerModel) and loaded.validation == validation
    user = model.user_map.ids[3]
    np.testing.assert_array_equal(loaded.recommend(user, 10).items, model.recommend(user, 10).items)
    # a retriever over the ranker's own items is read without mapping: the same scores as
    # through the mapping every other retriever needs
    assert loaded.stage.same_items == [True]
    users = np.arange(6)
    fast = loaded.score_users(users)
    loaded.stage.same_items = [False]
    np.testing.assert_array_equal(loaded.score_users(users), fast)


def test_a_ranker_that_loses_on_validation_serves_the_best_single_source(
    events: pa.Table, items: pa.Table
) -> None:
    # one tree on two leaves is barely a ranking: the best source's order must win instead
    weak = {**FAST, "trees": 1, "leaves": 2, "min_rows_in_leaf": 100_000}
    model = RankerModel(weak).fit(events, items)
    scores = model.validation["ndcg@10"]
    best = max(model.source_names(), key=scores.__getitem__)
    assert scores["ranker"] <= scores[best]
    assert model.validation["served"] == best
    user = 5
    source_scores = model.stage.dense_scores(
        model.user_map.ids[[user]], [model.history(user)], model.params.recent_items
    )[model.source_names().index(best)][0]
    np.testing.assert_array_equal(model.score_users(np.array([user]))[0], source_scores)


def test_the_event_path_keeps_item_counters_equal_to_the_offline_definition(
    events: pa.Table, items: pa.Table
) -> None:
    """Events accepted by an API process after training move the ranker's fresh item features
    exactly as counting over training plus those events would."""
    from recsys_lite.online.state import OnlineState

    model = RankerModel(FAST).fit(events, items)
    online = OnlineState(model)
    newest = newest_ts(events)
    later = events_after_training(model, events, ["view"] * 12)
    online.apply(later)
    wanted = np.arange(10)
    for at in (newest + 200, newest + 400):
        offline = offline_item_counts(model, events, later, wanted, at)
        live = model.item_fresh(wanted, at)
        for name in COUNTED:
            np.testing.assert_array_equal(live[name], offline[name], err_msg=name)
    assert live["item_events_5m"][:3].sum() > 0


def test_forgetting_a_shopper_removes_them_from_every_retriever(
    events: pa.Table, items: pa.Table
) -> None:
    from recsys_lite.models.forgetting import forget_users

    model = RankerModel(FAST).fit(events, items)
    gone = model.user_map.ids[4]
    other = model.user_map.ids[5]
    forget_users(model, np.array([4]), relearn=True)
    assert not model.knows_user(gone)
    assert all(gone not in retriever.user_map for retriever in model.stage.retrievers)
    assert len(model.recommend(other, 10).items) == 10
