"""What the shop knows about one shopper, as the API and ``recsys-lite profile`` show it:
totals by event type, first and last event, recent items with their catalog data, top
categories and brands with their shares, and whether the served model personalises them."""

from __future__ import annotations

from collections import Counter
from typing import Any

from recsys_lite.data.store import Store
from recsys_lite.errors import NotFoundError
from recsys_lite.models.base import Recommender
from recsys_lite.serving.catalog import Catalog


def _shares(counter: Counter[str], top: int, total: int) -> list[dict[str, Any]]:
    return [
        {"name": name, "events": count, "share": round(count / total, 4)}
        for name, count in counter.most_common(top)
    ]


def user_profile(
    store: Store,
    model: Recommender,
    catalog: Catalog | None,
    user_id: str,
    *,
    online_events: list[dict[str, Any]],
    recent_limit: int = 10,
    top_categories: int = 5,
) -> dict[str, Any]:
    with store.connect(read_only=True) as con:
        stored = con.execute(
            "SELECT item_id, ts, event_type FROM events WHERE user_id = ? ORDER BY ts, seq",
            [user_id],
        ).fetchall()
    events = [(item, int(ts), kind) for item, ts, kind in stored]
    # events this process applied that the store does not hold yet (its inbox is folded in
    # every few seconds): shown once, without a type (the online state keeps only weights)
    stored_pairs = {(item, ts) for item, ts, _ in events}
    events += [
        (str(e["item_id"]), int(e["ts"]), "not yet stored")
        for e in online_events
        if (str(e["item_id"]), int(e["ts"])) not in stored_pairs
    ]
    if not events:
        raise NotFoundError(f"unknown user {user_id!r}")
    events.sort(key=lambda event: event[1])
    totals = Counter(kind for _, _, kind in events)
    categories: Counter[str] = Counter()
    brands: Counter[str] = Counter()
    rows: dict[str, dict[str, Any] | None] = {}
    for item, _, _ in events:
        if item not in rows:
            rows[item] = catalog.item(item) if catalog is not None else None
        row = rows[item] or {}
        if row.get("category"):
            categories[str(row["category"])] += 1
        if row.get("brand"):
            brands[str(row["brand"])] += 1
    recent: list[dict[str, Any]] = []
    for item, ts, kind in reversed(events):
        if len(recent) >= recent_limit:
            break
        recent.append({"item_id": item, "ts": ts, "event_type": kind, **(rows[item] or {})})
    return {
        "user_id": user_id,
        "events": len(events),
        "by_type": dict(totals),
        "first_event_ts": events[0][1],
        "last_event_ts": events[-1][1],
        "recent": recent,
        "top_categories": _shares(categories, top_categories, len(events)),
        "top_brands": _shares(brands, top_categories, len(events)),
        "personalisation": _personalisation(model, user_id, len(online_events)),
    }


def _personalisation(model: Recommender, user_id: str, online: int) -> dict[str, Any]:
    if model.knows_user(user_id):
        return {"personalised": True, "model": model.name, "reason": "trained on their events"}
    if online:
        return {
            "personalised": True, "model": model.name,
            "reason": f"folded in from {online} event(s) since the model was trained",
        }  # fmt: skip
    return {
        "personalised": False, "model": "popular",
        "reason": "their events came after the served model was trained and none reached this"
        " process since; the next retrain will know them",
    }  # fmt: skip
