"""Time-aware train/test splits. Nothing from the future of the cut leaks into training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.errors import EmptyDataError, InvalidInputError

SplitMethod = Literal["temporal", "leave-last"]
SPLIT_METHODS: tuple[str, ...] = get_args(SplitMethod)


def check_split_method(method: str) -> SplitMethod:
    if method not in SPLIT_METHODS:
        raise InvalidInputError(f"unknown split {method!r}; use {' or '.join(SPLIT_METHODS)}")
    return method  # type: ignore[return-value]


@dataclass(frozen=True)
class Split:
    train: pa.Table
    test: pa.Table
    description: dict[str, Any]


def temporal_split(events: pa.Table, test_size: float) -> Split:
    """A global cut: the last ``test_size`` fraction of events (by time) is the test set."""
    if not 0 < test_size < 1:
        raise InvalidInputError(f"test size must be between 0 and 1, got {test_size}")
    if events.num_rows < 2:
        raise EmptyDataError("need at least two events to split")
    ts = events.column("ts").to_numpy()
    cutoff = int(np.sort(ts)[int(len(ts) * (1 - test_size))])
    in_test = ts >= cutoff
    if in_test.all():
        raise EmptyDataError("every event has the same timestamp; a temporal split is impossible")
    return Split(
        train=events.filter(pa.array(~in_test)),
        test=events.filter(pa.array(in_test)),
        description={"method": "temporal", "test_size": test_size, "cutoff_ts": cutoff},
    )


def leave_last_split(events: pa.Table, n: int = 1) -> Split:
    """Each user's last ``n`` events are test, for users with more than ``n`` events."""
    if n < 1:
        raise InvalidInputError(f"leave-last needs n >= 1, got {n}")
    users = pc.dictionary_encode(events.column("user_id")).combine_chunks().indices.to_numpy()
    ts = events.column("ts").to_numpy()
    order = np.lexsort((np.arange(len(ts)), ts, users))
    sorted_users = users[order]
    # position counted from each user's last event: 0 for the last one
    boundaries = np.flatnonzero(np.diff(sorted_users)) + 1
    group_end = np.repeat(
        np.append(boundaries, len(order)), np.diff(np.concatenate([[0], boundaries, [len(order)]]))
    )
    from_end = group_end - 1 - np.arange(len(order))
    counts = np.bincount(users)
    in_test_sorted = (from_end < n) & (counts[sorted_users] > n)
    in_test = np.zeros(len(ts), dtype=bool)
    in_test[order] = in_test_sorted
    if not in_test.any():
        raise EmptyDataError(f"no user has more than {n} events; nothing to hold out")
    return Split(
        train=events.filter(pa.array(~in_test)),
        test=events.filter(pa.array(in_test)),
        description={"method": "leave-last", "n": n},
    )


def make_split(events: pa.Table, method: SplitMethod, test_size: float, last_n: int) -> Split:
    if method == "temporal":
        return temporal_split(events, test_size)
    return leave_last_split(events, last_n)
