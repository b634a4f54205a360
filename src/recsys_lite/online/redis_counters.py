"""The fresh item counters (ranking/features.py) of the shared online state in Redis.

An item's count over a window is training's events plus those since, as the offline definition
counts them. Training's last day comes with the artifact, the same in every replica, so each
counts it in its own memory; events after the training cut are in Redis, one sorted set per item
(``fresh:{item}``: member a unique event number, score its time), written once per batch by the
online state's script, trimmed to the longest window and expiring a day after its last write.
A request reads the counts of all its candidates over every window with one script call.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from recsys_lite.online.redis_client import Pause
from recsys_lite.ranking.features import FRESH_WINDOWS, LONGEST_WINDOW, WindowCounters

log = logging.getLogger(__name__)
FRESH_TTL = LONGEST_WINDOW  # an item's times are of no use a day after its last event

# KEYS: one fresh key per item. ARGV: at, the training cut (events at or before it are
# training's, counted in the process), then the windows. Returns one count per item and window,
# as one comma-separated string: a reply of 600 integers costs the client more than the counting.
COUNT = """
local at, cut = ARGV[1], tonumber(ARGV[2])
local lows = {}
for w = 3, #ARGV do lows[#lows + 1] = '(' .. math.max(tonumber(at) - tonumber(ARGV[w]), cut) end
local out = {}
for k = 1, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for i = 1, #lows do out[#out + 1] = redis.call('ZCOUNT', KEYS[k], lows[i], at) end
  else
    for i = 1, #lows do out[#out + 1] = 0 end
  end
end
return table.concat(out, ',')
"""


class SharedItemCounters:
    """``LiveCounters`` over training's last day (here) plus events since (in Redis)."""

    def __init__(self, client: Any, prefix: str, seed: tuple[list[str], list[int], int]) -> None:
        self.client = client
        self.prefix = prefix
        items, stamps, self.cut = seed
        self._seed = WindowCounters()
        for item, ts in zip(items, stamps, strict=True):
            self._seed.add(item, int(ts))
        self._newest = max(self._seed.newest, self.cut)
        self._lock = threading.Lock()
        self._script = client.register_script(COUNT)
        self._pause = Pause()
        # the ranker asks once per window for the same items and instant: one read serves all
        self._memo: tuple[list[str], int, dict[int, np.ndarray]] | None = None
        try:  # a replica started later knows how far events have gone already
            newest = client.hget(f"{prefix}fresh:meta", "newest")
            if newest is not None:
                self._newest = max(self._newest, int(newest))
        except Exception as exc:
            log.warning("fresh counters unreadable in Redis (%s)", exc)

    def add(self, key: str, ts: int) -> None:
        """Every process sees every event (the bus); Redis got it once, from the online state."""
        with self._lock:
            self._newest = max(self._newest, ts)

    @property
    def newest(self) -> int:
        return self._newest

    def count(self, keys: list[str], at: int, window: int) -> np.ndarray:
        memo = self._memo
        if memo is None or memo[0] is not keys or memo[1] != at or window not in memo[2]:
            memo = self._memo = (keys, at, self._read(keys, at, {*FRESH_WINDOWS.values(), window}))
        seeded: np.ndarray = self._seed.count(keys, at, window)
        return seeded + memo[2].get(window, 0)

    def _read(self, keys: list[str], at: int, windows: set[int]) -> dict[int, np.ndarray]:
        ordered = sorted(windows)
        if not keys:
            return {window: np.zeros(0, dtype=np.int64) for window in ordered}
        if self._pause.active:
            return {}
        try:
            flat = self._script(
                keys=[f"{self.prefix}fresh:{key}" for key in keys], args=[at, self.cut, *ordered]
            )
        except Exception as exc:  # training's counts alone while Redis is away
            self._pause.failed("fresh counters", exc)
            return {}
        counts = np.array(flat.split(b","), dtype=np.int64).reshape(len(keys), len(ordered))
        return {window: counts[:, n] for n, window in enumerate(ordered)}
