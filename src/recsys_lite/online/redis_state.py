"""Online state in Redis: every replica reads and writes the same shoppers' recent events and
trending counts, so any replica answers alike, a replica killed loses nothing and one started
later starts warm.

Every key is under ``{BUS_TOPIC}:online:`` and carries a TTL, so a Redis server bounded by
``maxmemory`` with ``maxmemory-policy volatile-lru`` evicts only these keys, never the stream:

* ``recent:{subject}``: list of the shopper's last ``HISTORY_LENGTH`` events with a positive
  weight (``"weight ts item"``); its TTL restarts with every write;
* ``counted:{subject}``: hash item -> the hour it was counted towards trending (at most
  ``MAX_COUNTED_ITEMS`` items), so an erasure can take those counts back;
* ``trend:{hour}``: sorted set item -> shoppers counted in that hour of event time;
* ``active:{hour}``: HyperLogLog of shoppers with events that hour (the /status estimate);
* ``batch:{batch_id}``: the mark that a batch was applied;
* ``fresh:{item}`` and ``fresh:meta``: the ranker's fresh item counters
  (online/redis_counters.py), expiring a day (the longest window) after their last write.

Shoppers are named by their keyed hash (data/subjects.py), as erasure names them: any replica
deletes a shopper's keys from the erase message alone, and Redis never holds a shopper id.

A batch is applied by one Lua script, atomically, which first marks it (``SET NX``): the replica
that accepted it applies it, and every replica that later reads it from the bus finds the mark
and changes nothing, so nothing is counted twice, not even after a crash between two writes.
Folded-in user vectors depend on the model, so they are not stored: the recent events are, and
each request folds them in as in-process state does (with the weights of the writing model's
weighting, as carried over across swaps in memory).

A request reads the shopper's list in one round trip; trending counts are re-read at most once a
second per process, in that same pipeline when due (a ranker's candidates' fresh counts take
one more, from its second stage).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from recsys_lite.config import Settings
from recsys_lite.data.interactions import event_weights
from recsys_lite.data.subjects import load_key, subject_hash
from recsys_lite.models.base import HISTORY_LENGTH, Recommender
from recsys_lite.online.redis_client import Pause, client_for
from recsys_lite.online.redis_counters import FRESH_TTL, SharedItemCounters
from recsys_lite.online.state import (
    MAX_COUNTED_ITEMS,
    OnlineEvent,
    OnlineState,
    OnlineStateBase,
    observe,
)

log = logging.getLogger(__name__)
HOUR = 3_600
POPULARITY_REFRESH_SECONDS = 1.0
MAX_UNAPPLIED = 1_000  # batches kept for a Redis that is down; later ones reach it by the bus

# KEYS: the batch mark, the fresh counters' meta hash, four per event with a positive weight
# (recent, counted, trend, active), then one per event (fresh).
# ARGV: mark TTL, history length, state TTL, most items counted per shopper, how many events
# have a positive weight, fresh TTL, then four per such event (packed event, subject, item or ""
# when the item is not counted, hour), then one per event (time).
APPLY = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local length, ttl, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local positive, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local a = 7
for k = 3, 2 + 4 * positive, 4 do
  local recent, counted, trend, active = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  redis.call('RPUSH', recent, ARGV[a])
  redis.call('LTRIM', recent, -length, -1)
  redis.call('EXPIRE', recent, ttl)
  redis.call('PFADD', active, ARGV[a + 1])
  redis.call('EXPIRE', active, ttl)
  local item = ARGV[a + 2]
  if item ~= '' and redis.call('HLEN', counted) < most
      and redis.call('HSETNX', counted, item, ARGV[a + 3]) == 1 then
    redis.call('ZINCRBY', trend, 1, item)
    redis.call('EXPIRE', trend, ttl)
  end
  redis.call('EXPIRE', counted, ttl)
  a = a + 4
end
-- every event, impressions too, counts towards the fresh counters, as a unique member
local first = 3 + 4 * positive
if first <= #KEYS then
  local meta = KEYS[2]
  local seq = redis.call('HINCRBY', meta, 'seq', #KEYS - first + 1)
  local newest = tonumber(redis.call('HGET', meta, 'newest') or '0')
  for k = first, #KEYS do
    local ts = tonumber(ARGV[a])
    redis.call('ZADD', KEYS[k], ts, seq - #KEYS + k)
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', '(' .. (ts - window))
    redis.call('EXPIRE', KEYS[k], window)
    if ts > newest then newest = ts end
    a = a + 1
  end
  redis.call('HSET', meta, 'newest', newest)
  redis.call('EXPIRE', meta, window)
end
return 1
"""

# KEYS: recent, counted. ARGV: the trend key prefix. Takes back what the shopper counted towards
# trending (in buckets not expired yet: a missing one would be created without a TTL).
FORGET = """
local counted = redis.call('HGETALL', KEYS[2])
for i = 1, #counted, 2 do
  local trend = ARGV[1] .. counted[i + 1]
  if redis.call('EXISTS', trend) == 1 then
    if tonumber(redis.call('ZINCRBY', trend, -1, counted[i])) <= 0 then
      redis.call('ZREM', trend, counted[i])
    end
  end
end
return redis.call('DEL', KEYS[1], KEYS[2])
"""


def forget_in_redis(client: Any, prefix: str, subjects: Iterable[str]) -> int:
    """Delete these shoppers' keys and take back their trending counts; how many had keys."""
    script = client.register_script(FORGET)
    pipe = client.pipeline(transaction=False)
    for subject in subjects:
        keys = [f"{prefix}recent:{subject}", f"{prefix}counted:{subject}"]
        script(keys=keys, args=[f"{prefix}trend:"], client=pipe)
    return sum(1 for deleted in pipe.execute() if int(deleted) > 0)


def _parse(raw: bytes) -> OnlineEvent:
    weight, ts, item = raw.decode().split(" ", 2)
    return OnlineEvent(item, float(weight), int(ts))


class RedisOnlineState(OnlineStateBase):
    def __init__(
        self,
        model: Recommender,
        client: Any,
        prefix: str,
        ttl_seconds: int,
        subject_of: Callable[[str], str],
        trained_until: int | None = None,
    ) -> None:
        super().__init__(model)
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.subject_of = subject_of
        self.trained_until = trained_until
        self._apply_script = client.register_script(APPLY)
        self._refreshed_at = -math.inf
        self._refresh_lock = threading.Lock()
        self._unapplied: deque[tuple[str, pa.Table]] = deque(maxlen=MAX_UNAPPLIED)
        self._pause, self._write_pause = Pause(), Pause()
        share = getattr(model, "use_live_counters", None)
        if share is not None:  # the ranker's fresh item counters live here too
            share(SharedItemCounters(client, prefix, model.fresh_seed()))  # type: ignore[attr-defined]

    def _key(self, kind: str, name: object) -> str:
        return f"{self.prefix}{kind}:{name}"

    # ----- writes -----------------------------------------------------------------------------

    def apply(self, events: pa.Table, batch_id: str | None = None) -> None:
        # every process sees every event: a ranker's counters learn how far events have gone
        observe(self.model, events)
        self.applied += events.num_rows
        self._unapplied.append((batch_id or f"local-{uuid.uuid4().hex}", events))
        if self._write_pause.active:  # writes run on the event loop: no wait on a Redis away
            return
        while self._unapplied:
            batch, table = self._unapplied[0]
            try:
                self._write(batch, table)
            except Exception as exc:  # the batch stays queued for the next apply
                self._write_pause.failed("online state (write)", exc)
                return
            self._unapplied.popleft()
        self._refreshed_at = -math.inf  # this process's next answer shows its own events

    def _write(self, batch_id: str, events: pa.Table) -> None:
        weights = event_weights(events, self.model.params.weighting).tolist()
        items = events.column("item_id").to_pylist()
        stamps = [int(ts) for ts in events.column("ts").to_pylist()]
        keys = [self._key("batch", batch_id), self._key("fresh", "meta")]
        args: list[object] = []
        rows = zip(events.column("user_id").to_pylist(), items, weights, stamps, strict=True)
        item_map = self.model.item_map
        for user, item, weight, ts in rows:
            if weight <= 0:  # shown, not chosen (an impression): no preference to learn
                continue
            subject, hour = self.subject_of(str(user)), ts // HOUR
            keys += [
                self._key("recent", subject), self._key("counted", subject),
                self._key("trend", hour), self._key("active", hour),
            ]  # fmt: skip
            counted = item if item_map.get(item) is not None else ""
            args += [f"{weight:.6g} {ts} {item}", subject, counted, hour]
        positive = len(args) // 4
        keys += [self._key("fresh", item) for item in items]
        args += stamps
        fixed = [self.ttl_seconds, HISTORY_LENGTH, self.ttl_seconds, MAX_COUNTED_ITEMS]
        self._apply_script(keys=keys, args=[*fixed, positive, FRESH_TTL, *args])

    def forget_subjects(self, subjects: set[str], subject_of: Callable[[str], str]) -> int:
        forgotten = forget_in_redis(self.client, self.prefix, subjects)
        self._refreshed_at = -math.inf
        return forgotten

    # ----- reads ------------------------------------------------------------------------------

    def recent(self, user_id: str) -> list[OnlineEvent]:
        if self._pause.active:  # serve from the artifact alone while Redis is away
            return []
        hours = self._hours_due()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.lrange(self._key("recent", self.subject_of(user_id)), 0, -1)
            for hour in hours:
                pipe.zrange(self._key("trend", hour), 0, -1, withscores=True)
            found = pipe.execute()
        except Exception as exc:
            self._pause.failed("online state", exc)
            self._refreshed_at = -math.inf
            return []
        if hours:
            self._set_counts(found[1:])
        after = self.trained_until
        events = [_parse(raw) for raw in found[0]]
        return [e for e in events if after is None or e.ts > after]

    def events_of(self, user_id: str) -> list[dict[str, object]]:
        held = self.client.lrange(self._key("recent", self.subject_of(user_id)), 0, -1)
        return [{"item_id": e.item_id, "weight": e.weight, "ts": e.ts} for e in map(_parse, held)]

    def has_events(self, user_id: str) -> bool:
        return bool(self.recent(user_id))

    @property
    def users(self) -> int:
        """Shoppers with events within the TTL (HyperLogLog: within about 1%); -1 while Redis
        cannot be read (/status still answers, and says so)."""
        keys = [self._key("active", hour) for hour in self._live_hours(None)]
        try:
            return int(self.client.pfcount(*keys))
        except Exception as exc:
            log.warning("online state unreadable in Redis (%s)", exc)
            return -1

    def _live_hours(self, after: int | None) -> list[int]:
        now = int(time.time()) // HOUR
        oldest = now - math.ceil(self.ttl_seconds / HOUR) - 1
        first = oldest if after is None else max(oldest, after // HOUR)
        return list(range(first, now + 2))  # +1: event times may run ahead of this clock

    def _hours_due(self) -> list[int]:
        """The trending buckets to read when the counts are a second old, else none."""
        now = time.monotonic()
        with self._refresh_lock:
            if now - self._refreshed_at < POPULARITY_REFRESH_SECONDS:
                return []
            self._refreshed_at = now
        # the hour of the training cut is read whole: its events counted twice for an hour
        # rather than an hour of fresh ones missed
        return self._live_hours(self.trained_until)

    def _refresh_counts(self) -> None:
        if self._pause.active:
            return
        hours = self._hours_due()
        if not hours:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for hour in hours:
                pipe.zrange(self._key("trend", hour), 0, -1, withscores=True)
            self._set_counts(pipe.execute())
        except Exception as exc:
            self._pause.failed("trending counts", exc)
            self._refreshed_at = -math.inf

    def _set_counts(self, buckets: list[list[tuple[bytes, float]]]) -> None:
        item_map = self.model.item_map
        counts = np.zeros(len(item_map), dtype=np.float32)
        for bucket in buckets:
            for item, score in bucket:
                index = item_map.get(item.decode())
                if index is not None:
                    counts[index] += score
        if len(counts) != len(self._online_counts) or not np.array_equal(
            counts, self._online_counts
        ):
            self._online_counts = counts
            self._counts_version += 1


def create_online_state(
    model: Recommender, settings: Settings, trained_until: int | None
) -> OnlineStateBase:
    """Redis when ``settings.shared_online_state``, else the process's own."""
    if not settings.shared_online_state:
        return OnlineState(model, settings.online_max_users)
    key = load_key(settings.db_path)
    return RedisOnlineState(
        model, client_for(settings.redis_url), settings.online_state_prefix,
        int(settings.online_state_ttl_hours * HOUR), lambda user: subject_hash(key, user),
        trained_until,
    )  # fmt: skip
