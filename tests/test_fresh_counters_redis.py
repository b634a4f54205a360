"""The ranker's fresh item counters in the shared online state: every replica, one started later
too, counts as the offline definition does over training plus the events since, each once."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightgbm")

from fresh_counts import COUNTED, events_after_training, newest_ts, offline_item_counts
from recsys_lite.data.store import Store
from recsys_lite.online.redis_client import client_for
from recsys_lite.online.redis_state import RedisOnlineState
from recsys_lite.ranking.ranker import RankerModel

FAST = json.loads((Path(__file__).parent / "fast_params" / "ranker.json").read_text())


def test_replicas_count_fresh_item_events_once_in_redis(shop_db: Path, redis_url: str) -> None:
    store = Store(shop_db)
    events = store.read_events()
    model = RankerModel(FAST).fit(events, store.read_items())
    client, prefix = client_for(redis_url), f"fresh-{uuid.uuid4().hex}:online:"

    def replica() -> tuple[RankerModel, RedisOnlineState]:
        served = copy.deepcopy(model)
        return served, RedisOnlineState(served, client, prefix, 3600, lambda user: user)

    (first, first_state), (second, second_state) = replica(), replica()
    newest = newest_ts(events)
    # an impression is no preference, but it is an event the counters count
    later = events_after_training(model, events, ["view"] * 10 + ["impression"] * 2)
    first_state.apply(later, "batch-1")  # the replica that accepted the batch
    second_state.apply(later, "batch-1")  # another, reading it from the bus
    late, _ = replica()  # started after the events

    wanted = np.arange(10)
    for at in (newest + 200, newest + 400):
        offline = offline_item_counts(model, events, later, wanted, at)
        for served in (first, second, late):
            live = served.item_fresh(wanted, at)
            for name in COUNTED:
                np.testing.assert_allclose(live[name], offline[name], err_msg=name)
    assert late._live is not None and late._live.newest == newest + 360
