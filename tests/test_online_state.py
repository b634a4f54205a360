"""The popular fallback of a serving process: the same answer as ranking the whole catalog,
kept current by every event."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recsys_lite.models import create_model
from recsys_lite.online.state import MAX_COUNTED_ITEMS, POPULAR_HEAD, OnlineState

N_ITEMS = 3 * POPULAR_HEAD


def shop_events(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 40_000
    # power-law popularity with distinct counts, so the ranking has few ties to break
    items = np.minimum(rng.zipf(1.3, n), N_ITEMS) - 1
    return pa.table(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 5_000, n)],
            "item_id": [f"i{i}" for i in items],
            "ts": np.arange(n, dtype=np.int64),
            "qty": np.ones(n, dtype=np.int64),
            "event_type": ["purchase"] * n,
        }
    )


@pytest.fixture
def online() -> OnlineState:
    return OnlineState(create_model("popular").fit(shop_events()))


def full_ranking_scores(
    online: OnlineState, k: int, mask: np.ndarray | None, exclude: np.ndarray | None
) -> list[float]:
    ranked = online.model.popular(
        k, item_mask=mask, popularity=online.popularity(), exclude=exclude
    )
    return ranked.scores.tolist()


def test_fallback_matches_ranking_the_whole_catalog(online: OnlineState) -> None:
    n_items = len(online.model.item_map)
    assert n_items > POPULAR_HEAD
    rng = np.random.default_rng(1)
    top = online.model.popular(20).items
    for mask, exclude in [
        (None, None),
        (None, top[:5]),
        (rng.random(n_items) < 0.5, top[:3]),
        # so narrow that the most popular items hold fewer than k of it
        (np.isin(np.arange(n_items), np.argsort(online.popularity())[:40]), None),
    ]:
        got = online.popular(10, item_mask=mask, exclude=exclude)
        assert got.scores.tolist() == full_ranking_scores(online, 10, mask, exclude)
        if mask is not None:
            assert mask[got.items].all()
        if exclude is not None:
            assert not np.isin(got.items, exclude).any()


def test_events_move_the_fallback_at_once(online: OnlineState) -> None:
    before = online.popular(3)
    outsider = online.model.item_map.ids[np.argmin(online.popularity())]
    new_events = pa.table(
        {
            "user_id": [f"fan-{n}" for n in range(20_000)],
            "item_id": [outsider] * 20_000,
            "ts": np.full(20_000, 10**9, dtype=np.int64),
            "qty": np.ones(20_000, dtype=np.int64),
            "event_type": ["view"] * 20_000,
        }
    )
    online.apply(new_events)
    after = online.popular(3)
    assert online.model.item_map.ids[after.items[0]] == outsider
    assert after.items[1:].tolist() == before.items[:2].tolist()


def events_of(pairs: list[tuple[str, str]], event_type: str = "view") -> pa.Table:
    return pa.table(
        {
            "user_id": [user for user, _ in pairs],
            "item_id": [item for _, item in pairs],
            "ts": np.arange(len(pairs), dtype=np.int64),
            "qty": np.ones(len(pairs), dtype=np.int64),
            "event_type": [event_type] * len(pairs),
        }
    )


def test_memory_is_bounded_by_users_kept_whatever_clients_send() -> None:
    online = OnlineState(create_model("popular").fit(shop_events()), max_users=1_000)
    for batch in range(20):  # 20,000 one-off shoppers, each viewing one item
        online.apply(events_of([(f"bot{batch}-{n}", f"i{n % 50}") for n in range(1_000)]))
    assert len(online._events) == 1_000
    assert len(online._counted) == 1_000  # forgotten together with the users


def test_one_shopper_cannot_count_towards_trending_without_limit() -> None:
    online = OnlineState(create_model("popular").fit(shop_events()))
    before = online.popularity().sum()
    online.apply(events_of([("scraper", f"i{n}") for n in range(N_ITEMS)]))
    assert online.popularity().sum() - before == MAX_COUNTED_ITEMS
    online.apply(events_of([("scraper", "i0")] * 10))  # repeats never count twice
    assert online.popularity().sum() - before == MAX_COUNTED_ITEMS


def test_impressions_teach_nothing() -> None:
    online = OnlineState(create_model("popular").fit(shop_events()))
    before = online.popularity().copy()
    online.apply(events_of([("shopper", "i5"), ("shopper", "i6")], event_type="impression"))
    assert not online.has_events("shopper")
    assert np.array_equal(online.popularity(), before)
