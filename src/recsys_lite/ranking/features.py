"""Fresh features: how many events a user or an item had in the last 5 minutes, hour and day,
and how fast an item is rising, defined once for training and serving.

A count at instant ``at`` over window ``w`` is the number of events with ``at - w < ts <= at``.
``EventCounts`` computes it over an events table for any instants (training features at a cut);
``WindowCounters`` keeps it up to date as events arrive (an API process), or, behind the same
``LiveCounters`` interface, the shared online state keeps it in Redis
(online/redis_counters.py). ``fresh_features`` turns any of their counts into the same named
features, so they cannot drift apart.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import numpy as np

FRESH_WINDOWS: dict[str, int] = {"5m": 300, "1h": 3_600, "1d": 86_400}
LONGEST_WINDOW = max(FRESH_WINDOWS.values())
FRESH_FEATURES = (
    *(f"user_events_{name}" for name in FRESH_WINDOWS),
    *(f"item_events_{name}" for name in FRESH_WINDOWS),
    "item_velocity",
)
MAX_COUNTED_KEYS = 200_000  # online: least recently active users/items beyond this are dropped


def velocity(last_hour: np.ndarray, last_day: np.ndarray) -> np.ndarray:
    """The last hour's rate over the last day's hourly rate: above 1 when an item is rising.
    The +1 keeps a first event from looking like an infinite surge."""
    return np.asarray(last_hour * 24.0 / (last_day + 1.0), dtype=np.float32)


Counter = Callable[[int], np.ndarray]  # window seconds -> one count per requested row


def fresh_features(count_user: Counter, count_item: Counter) -> dict[str, np.ndarray]:
    """The fresh features from a way of counting user and item events over a window."""
    out: dict[str, np.ndarray] = {}
    for name, seconds in FRESH_WINDOWS.items():
        out[f"user_events_{name}"] = np.asarray(count_user(seconds), dtype=np.float32)
    for name, seconds in FRESH_WINDOWS.items():
        out[f"item_events_{name}"] = np.asarray(count_item(seconds), dtype=np.float32)
    out["item_velocity"] = velocity(out["item_events_1h"], out["item_events_1d"])
    return out


class EventCounts:
    """Counts of one key's events over windows ending at any instants, from a table of events
    (keys as integer codes >= 0, unix seconds >= 0)."""

    def __init__(self, keys: np.ndarray, ts: np.ndarray) -> None:
        # one sorted int64 of key<<32 | ts: a window is a range, found by two binary searches
        self._packed = np.sort(_pack(np.asarray(keys, np.int64), np.asarray(ts, np.int64)))

    def count(self, keys: np.ndarray, at: np.ndarray | int, window: int) -> np.ndarray:
        keys = np.asarray(keys, np.int64)
        at = np.broadcast_to(np.asarray(at, np.int64), keys.shape)
        upper = np.searchsorted(self._packed, _pack(keys, at), side="right")
        lower = np.searchsorted(self._packed, _pack(keys, np.maximum(at - window, -1)), "right")
        found: np.ndarray = (upper - lower).astype(np.int64)
        found[keys < 0] = 0  # a key the table never mentions
        return found


def _pack(keys: np.ndarray, ts: np.ndarray) -> np.ndarray:
    # ts - window may go below 0 for the oldest instants; -1 still sorts before every event
    return np.asarray((keys << 32) + ts, dtype=np.int64)


class LiveCounters(Protocol):
    """What serving reads fresh counts from, as events arrive."""

    def add(self, key: str, ts: int) -> None: ...

    @property
    def newest(self) -> int: ...

    def count(self, keys: list[str], at: int, window: int) -> np.ndarray: ...


class WindowCounters:
    """Event times per key, kept for the longest window, counted like ``EventCounts``.

    Events may arrive out of order (replicas, the bus): times are kept sorted, and those older
    than the longest window before the newest event seen are dropped, so memory is bounded by
    the events of a day per key and ``max_keys`` keys.
    """

    def __init__(self, max_keys: int = MAX_COUNTED_KEYS) -> None:
        self.max_keys = max_keys
        self._times: OrderedDict[str, list[int]] = OrderedDict()
        self._newest = 0
        self._lock = threading.Lock()

    def add(self, key: str, ts: int) -> None:
        with self._lock:
            self._newest = max(self._newest, ts)
            times = self._times.get(key)
            if times is None:
                times = self._times[key] = []
                if len(self._times) > self.max_keys:
                    self._times.popitem(last=False)
            else:
                self._times.move_to_end(key)
            bisect.insort(times, ts)
            horizon = self._newest - LONGEST_WINDOW
            if times[0] <= horizon:
                del times[: bisect.bisect_right(times, horizon)]

    @property
    def newest(self) -> int:
        return self._newest

    def count(self, keys: list[str], at: int, window: int) -> np.ndarray:
        with self._lock:
            found = np.zeros(len(keys), dtype=np.int64)
            for n, key in enumerate(keys):
                times = self._times.get(key)
                if times:
                    found[n] = bisect.bisect_right(times, at) - bisect.bisect_right(
                        times, at - window
                    )
            return found


class FreshCounters:
    """The online side: user and item counters fed by every accepted event."""

    def __init__(self, max_keys: int = MAX_COUNTED_KEYS) -> None:
        self.users = WindowCounters(max_keys)
        self.items = WindowCounters(max_keys)

    def observe(self, user_id: str, item_id: str, ts: int) -> None:
        self.users.add(user_id, ts)
        self.items.add(item_id, ts)

    def features(self, user_id: str, item_ids: list[str], at: int) -> dict[str, np.ndarray]:
        """Fresh features of one user and each of ``item_ids`` at ``at``."""
        return fresh_features(
            lambda w: np.repeat(self.users.count([user_id], at, w), len(item_ids)),
            lambda w: self.items.count(item_ids, at, w),
        )
