"""Time-aware train/test splits. Nothing from the future of the cut leaks into training.

Two rules hold for every split:

* An item the training part never mentions (its first event is in the test part) cannot be
  known to a model fitted on that part, so its test events are dropped instead of being scored
  as misses; ``new_items`` lists those items, the description counts them, and ``catalog``
  removes them from the item features the fit may read, so feature-aware models cannot place
  them either.
* Events of one user that share a timestamp are one basket (an order's lines, a page's
  impressions): they go to the same side of every cut, since their order within the second is
  only the order in which a file listed them.
"""

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
    test: pa.Table  # without the events of new_items
    description: dict[str, Any]
    new_items: pa.Array  # ids whose first event falls in the test part

    def catalog(self, items: pa.Table | None) -> pa.Table | None:
        """The catalog as the training part may know it: without the test part's new items."""
        if items is None or len(self.new_items) == 0:
            return items
        return items.filter(pc.invert(pc.is_in(items.column("item_id"), value_set=self.new_items)))


def _holdout(events: pa.Table, in_test: np.ndarray, description: dict[str, Any]) -> Split:
    train = events.filter(pa.array(~in_test))
    test = events.filter(pa.array(in_test))
    known = pc.is_in(test.column("item_id"), value_set=pc.unique(train.column("item_id")))
    new_items = pc.unique(test.filter(pc.invert(known)).column("item_id"))
    test = test.filter(known)
    description = {
        **description,
        "new_items": len(new_items),
        "new_item_events": int(in_test.sum()) - test.num_rows,
    }
    return Split(train, test, description, new_items)


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
    description = {"method": "temporal", "test_size": test_size, "cutoff_ts": cutoff}
    split = _holdout(events, in_test, description)
    if split.test.num_rows == 0:
        raise EmptyDataError("every test event is of an item first seen in the test period")
    return split


def forward_split(events: pa.Table, until_ts: int) -> Split:
    """Train on events up to ``until_ts`` (inclusive), test on the later ones; the test part may
    be empty. How a model trained until a moment is checked against what came after."""
    ts = events.column("ts").to_numpy()
    return _holdout(events, ts > until_ts, {"method": "forward", "after_ts": int(until_ts)})


def leave_last_split(events: pa.Table, n: int = 1) -> Split:
    """Each user's last ``n`` baskets (events sharing a timestamp) are test, for users with more
    than ``n`` baskets."""
    if n < 1:
        raise InvalidInputError(f"leave-last needs n >= 1, got {n}")
    if events.num_rows == 0:
        raise EmptyDataError("no events to split")
    users = pc.dictionary_encode(events.column("user_id")).combine_chunks().indices.to_numpy()
    ts = events.column("ts").to_numpy()
    order = np.lexsort((ts, users))
    sorted_users, sorted_ts = users[order], ts[order]
    # number baskets in sorted order; a new one starts at a new user or a new second
    new_user = np.ones(len(order), dtype=bool)
    new_user[1:] = np.diff(sorted_users) != 0
    new_basket = new_user.copy()
    new_basket[1:] |= np.diff(sorted_ts) != 0
    basket = np.cumsum(new_basket) - 1
    group = np.cumsum(new_user) - 1
    first = basket[new_user][group]
    last = basket[np.append(np.flatnonzero(new_user)[1:] - 1, len(order) - 1)][group]
    in_test_sorted = (last - basket < n) & (last - first + 1 > n)
    in_test = np.zeros(len(ts), dtype=bool)
    in_test[order] = in_test_sorted
    if not in_test.any():
        raise EmptyDataError(f"no user has more than {n} baskets; nothing to hold out")
    split = _holdout(events, in_test, {"method": "leave-last", "n": n})
    if split.test.num_rows == 0:
        raise EmptyDataError("every held-out event is of an item that training never saw")
    return split


def make_split(events: pa.Table, method: SplitMethod, test_size: float, last_n: int) -> Split:
    if method == "temporal":
        return temporal_split(events, test_size)
    return leave_last_split(events, last_n)
