"""Events → the weighted userxitem matrix every model trains on (one function for all)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from recsys_lite.data.idmap import IdMap

SECONDS_PER_DAY = 86_400.0


class Weighting(BaseModel):
    """How events become confidence values in the interaction matrix."""

    model_config = ConfigDict(extra="forbid")

    event_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "impression": 0.0,
            "view": 1.0,
            "click": 2.0,
            "add_to_cart": 4.0,
            "purchase": 8.0,
        }
    )
    default_event_weight: float = Field(1.0, ge=0, description="types not in event_weights")
    qty: Literal["linear", "log", "ignore"] = Field(
        "log", description="how quantity scales an event: q, 1 + ln q, or not at all"
    )
    half_life_days: float | None = Field(
        None, gt=0, description="exponential time decay relative to the newest event"
    )
    scheme: Literal["none", "bm25", "tfidf"] = "none"
    bm25_k1: float = Field(1.2, gt=0)
    bm25_b: float = Field(0.75, ge=0, le=1)


@dataclass(frozen=True)
class Interactions:
    matrix: sp.csr_matrix  # users x items, float32 confidences
    user_map: IdMap
    item_map: IdMap

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user_map), len(self.item_map))


def event_weights(events: pa.Table, weighting: Weighting, now: int | None = None) -> np.ndarray:
    """One weight per event, vectorised over the Arrow columns."""
    types = pc.dictionary_encode(events.column("event_type")).combine_chunks()
    per_type = np.array(
        [
            weighting.event_weights.get(str(t), weighting.default_event_weight)
            for t in types.dictionary.to_pylist()
        ],
        dtype=np.float64,
    )
    weights = (
        per_type[types.indices.to_numpy(zero_copy_only=False)]
        if len(per_type)
        else (np.ones(events.num_rows))
    )
    qty = np.maximum(events.column("qty").to_numpy().astype(np.float64), 1.0)
    if weighting.qty == "linear":
        weights = weights * qty
    elif weighting.qty == "log":
        weights = weights * (1.0 + np.log(qty))
    if weighting.half_life_days is not None and events.num_rows:
        ts = events.column("ts").to_numpy().astype(np.float64)
        reference = float(now if now is not None else ts.max())
        age_days = np.maximum(reference - ts, 0.0) / SECONDS_PER_DAY
        weights = weights * np.power(0.5, age_days / weighting.half_life_days)
    return np.asarray(weights, dtype=np.float32)


def build_interactions(
    events: pa.Table,
    weighting: Weighting | None = None,
    *,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    now: int | None = None,
) -> Interactions:
    """Sum the weights of each (user, item) pair into a CSR matrix.

    With given maps, events of ids outside them are dropped (used to score a holdout against a
    trained model); without, the maps are built from the events.
    """
    weighting = weighting or Weighting()
    user_map = user_map or IdMap.from_values(events.column("user_id"))
    item_map = item_map or IdMap.from_values(events.column("item_id"))
    users = user_map.to_index(events.column("user_id"), strict=False)
    items = item_map.to_index(events.column("item_id"), strict=False)
    weights = event_weights(events, weighting, now)
    # a zero weight (an impression: shown, not chosen) is no interaction at all
    keep = (users >= 0) & (items >= 0) & (weights > 0)
    matrix = sp.csr_matrix(
        (weights[keep], (users[keep], items[keep])),
        shape=(len(user_map), len(item_map)),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    if weighting.scheme != "none" and matrix.nnz:
        matrix = _reweight(matrix, weighting)
    return Interactions(matrix, user_map, item_map)


def _reweight(matrix: sp.csr_matrix, weighting: Weighting) -> sp.csr_matrix:
    """BM25 / TF-IDF with users as documents and items as terms.

    The inverse document frequency discounts items everybody touches, so a shopper's rarer
    choices say more about them; BM25 also saturates repeated interactions and normalises by
    how active the user is. The idf is ``log(1 + N / df)``, which stays positive.
    """
    matrix = matrix.tocsr(copy=True)
    n_users = matrix.shape[0]
    document_frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
    idf = np.log1p(n_users / np.maximum(document_frequency, 1)).astype(np.float32)
    if weighting.scheme == "tfidf":
        matrix.data = matrix.data * idf[matrix.indices]
        return matrix
    row_totals = np.asarray(matrix.sum(axis=1)).ravel()
    length_norm = row_totals / max(float(row_totals.mean()), 1e-12)
    rows = np.repeat(np.arange(n_users), np.diff(matrix.indptr))
    k1, b = weighting.bm25_k1, weighting.bm25_b
    tf = matrix.data
    saturation = tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * length_norm[rows]))
    matrix.data = (saturation * idf[matrix.indices]).astype(np.float32)
    return matrix
