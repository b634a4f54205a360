"""What an API process knows beyond its artifact: events since training, per user, and the
users counted towards trending since.

Two kinds hold it, behind one interface (``OnlineStateBase``): ``OnlineState`` keeps it in the
process, and every replica applies every event (its own at once, the others' from the event
bus), so all answer alike; ``RedisOnlineState`` (online/redis_state.py) keeps it in Redis,
written once per batch and read by every replica. A user's history for serving is the
artifact's stored history followed by the online events; the model folds it in
(``Recommender.score_history``), which for ALS is the least-squares user factor ALS itself
would compute.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from recsys_lite.data.interactions import event_weights
from recsys_lite.models.base import HISTORY_LENGTH, Recommender
from recsys_lite.models.types import History, Ranked

MAX_ONLINE_USERS = 100_000  # least recently active users are forgotten beyond this
MAX_COUNTED_ITEMS = 1_000
# The popular fallback answers from this many of the most popular items, ranked once per change
# of the counts: ranking a 100k-item catalog for every anonymous request cost several times a
# personal answer. Filters that leave fewer than k of them fall back to the full ranking.
POPULAR_HEAD = 1_000


@dataclass(frozen=True)
class OnlineEvent:
    item_id: str
    weight: float
    ts: int


class OnlineStateBase(ABC):
    """What serving asks of online state, whichever kind holds it. The popular fallback is
    computed here from ``_online_counts`` (users counted per item since training), which each
    kind keeps current."""

    def __init__(self, model: Recommender) -> None:
        self.model = model
        self.applied = 0  # events this process applied (or found applied by another)
        self._online_counts = np.zeros(len(model.item_map), dtype=np.float32)
        self._counts_version = 0  # bumped whenever a count changes
        self._head: tuple[int, Ranked] | None = None

    @abstractmethod
    def apply(self, events: pa.Table, batch_id: str | None = None) -> None:
        """Fold a batch of normalised events in; a batch id seen before changes nothing."""

    @abstractmethod
    def recent(self, user_id: str) -> list[OnlineEvent]:
        """The user's online events still to fold in, oldest first (one read)."""

    @abstractmethod
    def events_of(self, user_id: str) -> list[dict[str, object]]:
        """Every online event held for the user (what an export shows)."""

    @abstractmethod
    def forget_subjects(self, subjects: set[str], subject_of: Callable[[str], str]) -> int:
        """Forget the shoppers with these keyed hashes; how many were held."""

    @property
    @abstractmethod
    def users(self) -> int:
        """Shoppers held (an estimate where counting exactly would cost a scan)."""

    def grow(self) -> None:
        """The model gained items: extend the per-item counters."""
        extra = len(self.model.item_map) - len(self._online_counts)
        if extra > 0:
            self._online_counts = np.concatenate(
                [self._online_counts, np.zeros(extra, dtype=np.float32)]
            )
            self._counts_version += 1

    def carry_over(self, previous: OnlineStateBase, after_ts: int | None) -> None:
        """Take over the previous state's events the new model was not trained on (nothing to
        do where the state lives outside the process)."""
        return None

    def _refresh_counts(self) -> None:
        """Bring ``_online_counts`` up to date (in the process they always are)."""
        return None

    def has_events(self, user_id: str) -> bool:
        return bool(self.recent(user_id))

    def history(self, user_id: str) -> tuple[History, np.ndarray]:
        """The user's serving history and the items to exclude (everything they have had)."""
        return self._history(user_id, self.recent(user_id))

    def recent_history(self, user_id: str) -> tuple[History, np.ndarray] | None:
        """``history`` when the user has online events, else None, from one read."""
        online = self.recent(user_id)
        return self._history(user_id, online) if online else None

    def _history(self, user_id: str, online: list[OnlineEvent]) -> tuple[History, np.ndarray]:
        model = self.model
        known = model.user_map.get(user_id)
        indices = [model.item_map.get(e.item_id) for e in online]
        kept = [(i, e) for i, e in zip(indices, online, strict=True) if i is not None]
        online_items = np.array([i for i, _ in kept], dtype=np.int64)
        online_weights = np.array([e.weight for _, e in kept], dtype=np.float32)
        online_ts = np.array([e.ts for _, e in kept], dtype=np.int64)
        if known is None:
            return History(online_items, online_weights, online_ts), np.unique(online_items)
        stored = model.history(known)
        history = History(
            np.concatenate([stored.items, online_items])[-HISTORY_LENGTH:],
            np.concatenate([stored.weights, online_weights])[-HISTORY_LENGTH:],
            np.concatenate([stored.ts, online_ts])[-HISTORY_LENGTH:],
        )
        excluded = np.union1d(model.seen_items(known), online_items)
        return history, excluded

    def popularity(self) -> np.ndarray:
        """The fallback ranking: trained popularity plus users counted since."""
        self._refresh_counts()
        return self.model.item_popularity + self._online_counts

    def popular(
        self, k: int, *, item_mask: np.ndarray | None = None, exclude: np.ndarray | None = None
    ) -> Ranked:
        """The k most popular items allowed by the filters, online counts included."""
        self._refresh_counts()
        version = self._counts_version
        if self._head is None or self._head[0] != version:
            # a count changing meanwhile bumps the version again, so this is recomputed next time
            self._head = (version, self.model.popular(POPULAR_HEAD, popularity=self.popularity()))
        head = self._head[1]
        keep = np.ones(len(head.items), dtype=bool)
        if item_mask is not None:
            keep &= item_mask[head.items]
        if exclude is not None and len(exclude):
            keep &= ~np.isin(head.items, exclude)
        whole_catalog = len(head.items) == len(self.model.item_map)
        if whole_catalog or np.count_nonzero(keep) >= k:
            return Ranked(head.items[keep][:k], head.scores[keep][:k])
        return self.model.popular(
            k, item_mask=item_mask, popularity=self.popularity(), exclude=exclude
        )


def observe(model: Recommender, events: pa.Table) -> None:
    """Every event moves the model's fresh item counters (the ranker's), in every process."""
    method = getattr(model, "observe_events", None)
    if method is not None:
        method(
            events.column("user_id").to_pylist(),
            events.column("item_id").to_pylist(),
            events.column("ts").to_pylist(),
        )


class OnlineState(OnlineStateBase):
    """Memory is bounded whatever clients send: at most ``max_users`` users (the least recently
    active are forgotten), ``HISTORY_LENGTH`` events each, and ``MAX_COUNTED_ITEMS`` distinct
    items counted per user towards trending (a person does not look at thousands of items
    between two retrains; a script that does gets no more weight than that)."""

    def __init__(self, model: Recommender, max_users: int = MAX_ONLINE_USERS) -> None:
        super().__init__(model)
        self.max_users = max_users
        self._lock = threading.Lock()
        self._events: OrderedDict[str, deque[OnlineEvent]] = OrderedDict()
        # items counted towards trending, per user: forgotten with the user, so this is bounded
        # by the users kept (a forgotten user who comes back may be counted again)
        self._counted: dict[str, set[str]] = {}

    def apply(self, events: pa.Table, batch_id: str | None = None) -> None:
        """Fold a batch of normalised events in (idempotence is the caller's: batch ids)."""
        weights = event_weights(events, self.model.params.weighting)
        users = events.column("user_id").to_pylist()
        items = events.column("item_id").to_pylist()
        stamps = events.column("ts").to_pylist()
        with self._lock:
            for user, item, weight, ts in zip(users, items, weights.tolist(), stamps, strict=True):
                self._add(user, item, weight, ts)
            self._forget_beyond_capacity()
            self.applied += events.num_rows
            observe(self.model, events)

    def _add(self, user: str, item: str, weight: float, ts: int) -> None:
        if weight <= 0:  # shown, not chosen (an impression): no preference to learn
            return
        queue = self._events.get(user)
        if queue is None:
            queue = self._events[user] = deque(maxlen=HISTORY_LENGTH)
        else:
            self._events.move_to_end(user)
        queue.append(OnlineEvent(item, weight, ts))
        index = self.model.item_map.get(item)
        if index is None:
            return
        # trending counts distinct users per item, like the popularity it adds to
        counted = self._counted.setdefault(user, set())
        if item not in counted and len(counted) < MAX_COUNTED_ITEMS:
            counted.add(item)
            self._online_counts[index] += 1.0
            self._counts_version += 1

    def _forget_beyond_capacity(self) -> None:
        while len(self._events) > self.max_users:
            user, _ = self._events.popitem(last=False)
            self._counted.pop(user, None)

    def carry_over(self, previous: OnlineStateBase, after_ts: int | None) -> None:
        """Re-apply the previous state's events the new model was not trained on."""
        if not isinstance(previous, OnlineState):
            return
        with previous._lock:
            users = {user: list(queue) for user, queue in previous._events.items()}
        with self._lock:
            for user, queue in users.items():
                for event in queue:
                    if after_ts is None or event.ts > after_ts:
                        self._add(user, event.item_id, event.weight, event.ts)
            self._forget_beyond_capacity()

    def forget(self, user_ids: list[str]) -> int:
        """Drop these users' events and what they counted towards trending; how many were
        held."""
        forgotten = 0
        with self._lock:
            for user in user_ids:
                if self._events.pop(user, None) is not None:
                    forgotten += 1
                for item in self._counted.pop(user, set()):
                    index = self.model.item_map.get(item)
                    if index is not None:
                        self._online_counts[index] = max(self._online_counts[index] - 1.0, 0.0)
                        self._counts_version += 1
        return forgotten

    @property
    def users(self) -> int:
        return len(self._events)

    def events_of(self, user_id: str) -> list[dict[str, object]]:
        with self._lock:
            held = list(self._events.get(user_id, ()))
        return [{"item_id": e.item_id, "weight": e.weight, "ts": e.ts} for e in held]

    def users_where(self, predicate: Callable[[str], bool]) -> list[str]:
        with self._lock:
            return [user for user in self._events if predicate(user)]

    def forget_subjects(self, subjects: set[str], subject_of: Callable[[str], str]) -> int:
        return self.forget(self.users_where(lambda user: subject_of(user) in subjects))

    def recent(self, user_id: str) -> list[OnlineEvent]:
        with self._lock:
            return list(self._events.get(user_id, ()))

    def has_events(self, user_id: str) -> bool:
        return user_id in self._events
