"""The ranker's fresh item counters checked against their offline definition: events that
arrive after training, and the counts over training plus them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.ranking.features import EventCounts, fresh_features
from recsys_lite.ranking.ranker import RankerModel

# the ranker's fresh item features
COUNTED = ("item_events_5m", "item_events_1h", "item_events_1d", "item_velocity")


def newest_ts(events: pa.Table) -> int:
    return int(pc.max(events.column("ts")).as_py())


def events_after_training(model: RankerModel, events: pa.Table, event_types: list[str]) -> pa.Table:
    """A new shopper's events, one every 30 s after the newest training event, on the
    catalog's first three items in turn: one event a type of ``event_types``."""
    newest, hot = newest_ts(events), model.item_map.ids[:3].tolist()
    n = len(event_types)
    return pa.table(
        {
            "user_id": ["u-new"] * n,
            "item_id": [hot[i % 3] for i in range(n)],
            "ts": pa.array([newest + 30 * i for i in range(1, n + 1)], pa.int64()),
            "qty": pa.array([1] * n, pa.int32()),
            "event_type": event_types,
        }
    )


def offline_item_counts(
    model: RankerModel, events: pa.Table, later: pa.Table, wanted: np.ndarray, at: int
) -> dict[str, np.ndarray]:
    """The fresh item features of ``wanted`` at ``at`` by the offline definition, counted over
    the training ``events`` and the ``later`` ones together."""
    both = pa.concat_tables(
        [events.select(later.column_names), later.cast(events.select(later.column_names).schema)]
    )
    codes = model.item_map.to_index(both.column("item_id"))
    counts = EventCounts(codes, both.column("ts").to_numpy())
    return fresh_features(lambda w: np.zeros(len(wanted)), lambda w: counts.count(wanted, at, w))
