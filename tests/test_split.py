from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from recsys_lite.errors import EmptyDataError, InvalidInputError
from recsys_lite.evaluation.split import Split, leave_last_split, temporal_split
from recsys_lite.models import Recommender
from recsys_lite.training import holdout_metrics


def events(rows: list[tuple[str, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [u for u, _ in rows],
            "item_id": ["i"] * len(rows),  # one item: none is new to the test part
            "ts": pa.array([t for _, t in rows], pa.int64()),
            "qty": pa.array([1] * len(rows), pa.int32()),
            "event_type": ["view"] * len(rows),
        }
    )


def test_temporal_split_cuts_globally_by_time() -> None:
    table = events([("a", t) for t in range(10)])
    split = temporal_split(table, 0.3)
    assert split.train.column("ts").to_pylist() == list(range(7))
    assert split.test.column("ts").to_pylist() == [7, 8, 9]
    assert split.description["cutoff_ts"] == 7


def test_temporal_split_refuses_bad_input() -> None:
    with pytest.raises(InvalidInputError):
        temporal_split(events([("a", 1), ("a", 2)]), 1.5)
    with pytest.raises(EmptyDataError):
        temporal_split(events([("a", 5), ("b", 5)]), 0.5)


def test_leave_last_holds_out_each_users_latest_events() -> None:
    table = events([("a", 3), ("a", 1), ("a", 2), ("b", 10), ("b", 11), ("c", 4)])
    split = leave_last_split(table, 1)
    held = sorted(
        zip(
            split.test.column("user_id").to_pylist(),
            split.test.column("ts").to_pylist(),
            strict=True,
        )
    )
    assert held == [("a", 3), ("b", 11)]  # c has a single event: it stays in training
    assert split.train.num_rows == 4

    two = leave_last_split(table, 2)
    assert sorted(two.test.column("ts").to_pylist()) == [2, 3]


def shop(rows: list[tuple[str, str, int]]) -> pa.Table:
    table = events([(user, ts) for user, _, ts in rows])
    return table.set_column(1, "item_id", pa.array([item for _, item, _ in rows]))


def held_out(split: Split) -> list[tuple[str, str, int]]:
    columns = [split.test.column(c).to_pylist() for c in ("user_id", "item_id", "ts")]
    return sorted(zip(*columns, strict=True))


def test_leave_last_never_splits_a_basket_sharing_a_second() -> None:
    table = shop(
        [
            ("a", "x", 1),
            ("a", "x", 5),  # a's last order: three lines in one second
            ("a", "y", 5),
            ("a", "z", 5),
            ("b", "y", 7),  # b's only order: nothing older to learn from, so it all trains
            ("b", "z", 7),
            ("c", "y", 2),
            ("c", "z", 3),
        ]
    )
    split = leave_last_split(table, 1)
    assert held_out(split) == [("a", "x", 5), ("a", "y", 5), ("a", "z", 5), ("c", "z", 3)]
    assert sorted(split.train.column("user_id").to_pylist()) == ["a", "b", "b", "c"]


def test_items_first_seen_in_the_test_part_are_neither_targets_nor_in_the_catalog() -> None:
    table = shop([("a", "x", 1), ("b", "y", 2), ("a", "y", 8), ("a", "new", 9), ("b", "new", 9)])
    split = temporal_split(table, 0.6)
    assert held_out(split) == [("a", "y", 8)]
    assert split.new_items.to_pylist() == ["new"]
    assert split.description["new_item_events"] == 2
    catalog = pa.table({"item_id": ["x", "y", "new", "unsold"], "category": ["c"] * 4})
    kept = split.catalog(catalog)
    assert kept is not None and kept.column("item_id").to_pylist() == ["x", "y", "unsold"]

    # leave-last: an item no training event mentions is dropped the same way
    rows = [
        ("a", "x", 1),
        ("a", "new", 2),
        ("b", "x", 1),
        ("b", "y", 2),
        ("c", "y", 1),
        ("c", "x", 3),
    ]
    last = leave_last_split(shop(rows), 1)
    assert held_out(last) == [("b", "y", 2), ("c", "x", 3)]
    assert last.new_items.to_pylist() == ["new"]


def test_the_holdout_fit_and_score_ignore_items_first_seen_in_the_test_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = shop(
        [
            ("u1", "a", 1),
            ("u2", "a", 2),
            ("u2", "b", 3),
            ("u3", "c", 4),
            ("u1", "b", 10),  # the popular list for u1 is [b, c]: a hit at rank 1
            ("u1", "new", 10),  # first seen in the test window: no model could rank it
        ]
    )
    catalog = pa.table({"item_id": ["a", "b", "c", "new", "unsold"], "category": ["k"] * 5})
    fitted: list[Recommender] = []
    original_fit = Recommender.fit

    def spying_fit(self: Recommender, *args: Any, **kwargs: Any) -> Recommender:
        fitted.append(original_fit(self, *args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(Recommender, "fit", spying_fit)
    metrics = holdout_metrics("popular", None, table, catalog, test_size=0.3)["metrics"]
    assert metrics["recall@10"] == pytest.approx(1.0)  # not 0.5: "new" is no miss
    assert metrics["ndcg@10"] == pytest.approx(1.0)

    # a model that maps catalog items without events still gets the never-sold one, not "new"
    holdout_metrics("lightfm", {"epochs": 2}, table, catalog, test_size=0.3)
    assert "unsold" in fitted[-1].item_map and "new" not in fitted[-1].item_map
