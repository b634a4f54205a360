"""IdMap and the interaction matrix."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.interactions import Weighting, build_interactions
from recsys_lite.errors import NotFoundError


def test_idmap_round_trip_and_unknown_ids() -> None:
    ids = IdMap.from_values(pa.chunked_array([["b", "a", "b", "c"]]))
    assert ids.ids.tolist() == ["b", "a", "c"]
    assert ids.to_index(["c", "b"]).tolist() == [2, 0]
    assert ids.to_external([1, 2]).tolist() == ["a", "c"]
    assert ids.to_index(["a", "zz"], strict=False).tolist() == [1, -1]
    with pytest.raises(NotFoundError, match="zz"):
        ids.to_index(["zz"])
    grown = ids.add(["c", "d"])
    assert grown.ids.tolist() == ["b", "a", "c", "d"] and len(ids) == 3


def events() -> pa.Table:
    return pa.table(
        {
            "user_id": ["u1", "u1", "u1", "u2"],
            "item_id": ["i1", "i1", "i2", "i2"],
            "ts": pa.array([0, 86_400, 86_400, 86_400], pa.int64()),
            "qty": pa.array([1, 3, 1, 1], pa.int32()),
            "event_type": ["view", "purchase", "click", "custom"],
        }
    )


def test_weights_sum_per_pair_with_types_and_quantity() -> None:
    w = Weighting(event_weights={"view": 1, "purchase": 10, "click": 2}, qty="linear")
    m = build_interactions(events(), w)
    dense = m.matrix.toarray()
    assert dense[0, 0] == pytest.approx(1 + 10 * 3)  # view + purchase of 3
    assert dense[0, 1] == pytest.approx(2)
    assert dense[1, 1] == pytest.approx(1)  # custom type gets the default weight


def test_time_decay_halves_a_day_old_event() -> None:
    w = Weighting(
        event_weights={"view": 1, "purchase": 0, "click": 0}, half_life_days=1, qty="ignore"
    )
    dense = build_interactions(events(), w).matrix.toarray()
    assert dense[0, 0] == pytest.approx(0.5)


def test_log_quantity_and_bm25() -> None:
    log = build_interactions(events(), Weighting(event_weights={"purchase": 1}, qty="log"))
    assert log.matrix[0, 0] == pytest.approx(1 + (1 + np.log(3)))
    bm25 = build_interactions(events(), Weighting(scheme="bm25"))
    assert bm25.matrix.nnz == 3 and np.all(bm25.matrix.data > 0)


def test_given_maps_drop_unknown_ids() -> None:
    m = build_interactions(
        events(), user_map=IdMap(np.array(["u2"])), item_map=IdMap(np.array(["i2", "i9"]))
    )
    assert m.shape == (1, 2) and m.matrix.nnz == 1
