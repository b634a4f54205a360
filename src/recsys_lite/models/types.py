"""The values that pass between models and their callers: a user's recent events, what
training and forgetting hand a model, and a ranking (internal item indices with scores)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.interactions import Interactions


@dataclass(frozen=True)
class History:
    """A user's recent events, oldest first, as internal item indices."""

    items: np.ndarray
    weights: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class ForgottenEvents:
    """What forgetting users tells a model besides their matrix rows: their recent events
    (at most HISTORY_LENGTH each, as the model kept them) and the newest event time the model
    was trained on, for models that count over a window ending there."""

    history: History
    history_rows: np.ndarray  # which removed user (row of ``removed``) each event belongs to
    newest_ts: int
    # Whether to relearn the item side too where that costs more than dropping rows (see
    # forgetting.forget_users).
    relearn: bool = True


@dataclass(frozen=True)
class TrainingData:
    """What ``_fit`` receives: the matrix plus per-event indices and the aligned catalog."""

    interactions: Interactions
    events: pa.Table  # time-ordered
    event_users: np.ndarray  # internal user index of each event
    event_items: np.ndarray  # internal item index of each event
    event_weights: np.ndarray  # weight of each event under the model's weighting
    catalog: pa.Table | None  # row i describes item i (nulls where the catalog is silent)


def align_catalog(items: pa.Table, item_map: IdMap) -> pa.Table:
    """Catalog rows reordered to item indices; items missing from the catalog get nulls."""
    positions = pc.index_in(pa.array(item_map.ids), value_set=items.column("item_id"))
    aligned = items.take(positions)
    return aligned.set_column(0, "item_id", pa.array(item_map.ids))


@dataclass(frozen=True)
class Ranked:
    """Items best first, as internal indices with their scores."""

    items: np.ndarray
    scores: np.ndarray
