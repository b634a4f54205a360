"""Filters never shorten an answer: for every model, with exact search and with HNSW, any
combination of filters answers k items whenever k eligible items exist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_lite.data.store import Store
from recsys_lite.models import Recommender, create_model, retrieval
from recsys_lite.online.state import OnlineState
from recsys_lite.ranking.filters import ItemFilter
from recsys_lite.serving.catalog import Catalog
from strategies import item_filters

FAST_PARAMS: dict[str, dict[str, object]] = {
    path.stem: json.loads(path.read_text())
    for path in (Path(__file__).parent / "fast_params").glob("*.json")
}
CASES = [(name, kind) for name in sorted(FAST_PARAMS) for kind in ("flat", "hnsw")]


@pytest.fixture(scope="module")
def shop(shop_db: Path) -> tuple[pa.Table, pa.Table]:
    store = Store(shop_db)
    return store.read_events(), store.read_items()


@pytest.fixture(scope="module", autouse=True)
def small_index_thresholds() -> Iterator[None]:
    """The shop has 400 items, which the exact pass alone would serve: thresholds this low
    make every filtered request go through the index's over-fetch and refill first."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retrieval, "EXACT_ELIGIBLE_MAX", 0)
        patch.setattr(retrieval, "MAX_FETCH", 64)
        yield


_fitted: dict[str, Recommender] = {}


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}-{k}" for n, k in CASES])
def served(
    request: pytest.FixtureRequest, shop: tuple[pa.Table, pa.Table]
) -> tuple[Recommender, Catalog, pa.Table]:
    name, kind = request.param
    events, items = shop
    if name not in _fitted:
        _fitted[name] = create_model(name, FAST_PARAMS[name]).fit(events, items)
    model = _fitted[name]
    model.build_indexes(kind)
    if kind == "hnsw" and model.user_index is not None:
        assert model.user_index.kind == "hnsw"
    return model, Catalog(model.item_map, items), items


@st.composite
def requests(
    draw: st.DrawFn, items: pa.Table, n_users: int
) -> tuple[ItemFilter, set[str], int, int]:
    categories = sorted({c for c in items.column("category").to_pylist() if c})
    brands = sorted({b for b in items.column("brand").to_pylist() if b})
    ids = items.column("item_id").to_pylist()
    item_filter = draw(item_filters(categories, brands, ids))
    unavailable = set(draw(st.lists(st.sampled_from(ids), max_size=60)))
    return item_filter, unavailable, draw(st.integers(0, n_users - 1)), draw(st.integers(1, 40))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_k_eligible_items_always_come_back(
    served: tuple[Recommender, Catalog, pa.Table], data: st.DataObject
) -> None:
    model, catalog, items = served
    item_filter, unavailable, user, k = data.draw(requests(items, len(model.user_map)))
    catalog.upsert(
        pa.Table.from_pylist(
            [row | {"available": row["item_id"] not in unavailable} for row in items.to_pylist()]
        ),
        model.item_map,
    )
    mask = catalog.eligible(item_filter)
    eligible = np.ones(len(model.item_map), bool) if mask is None else mask
    user_id = str(model.user_map.ids[user])
    seen = model.seen_items(user)
    allowed = eligible.copy()
    allowed[seen] = False

    ranked = model.recommend(user_id, k, item_mask=mask)
    assert len(ranked.items) == min(k, int(allowed.sum()))
    assert allowed[ranked.items].all()
    assert list(ranked.scores) == sorted(ranked.scores, reverse=True)

    item = int(data.draw(st.integers(0, len(model.item_map) - 1)))
    similar = model.similar_items(str(model.item_map.ids[item]), k, item_mask=mask)
    if similar is not None:  # models without item similarity answer with popular items
        others = eligible.copy()
        others[item] = False
        assert len(similar.items) == min(k, int(others.sum()))
        assert others[similar.items].all()

    popular = OnlineState(model).popular(k, item_mask=mask)
    assert len(popular.items) == min(k, int(eligible.sum()))
    assert eligible[popular.items].all()
