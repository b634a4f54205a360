from __future__ import annotations

import pyarrow as pa
import pytest

from recsys_lite.errors import EmptyDataError, InvalidInputError
from recsys_lite.evaluation.split import leave_last_split, temporal_split


def events(rows: list[tuple[str, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [f"i{n}" for n in range(len(rows))],
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
