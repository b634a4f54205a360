"""Events and items change answers at once, against a real server writing a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import pytest

from conftest import AUTH, served_shop_fixtures

shop_copy, client = served_shop_fixtures(
    "online", {"INBOX_DRAIN_INTERVAL": "0.5", "MODEL_WATCH_INTERVAL": "0"}
)


def store_rows(
    db: Path, sql: str, done: Callable[[list[tuple[object, ...]]], bool], seconds: float = 30
) -> list[tuple[object, ...]]:
    """The query's rows once ``done`` says so, or the last rows read when time runs out: the
    server folds its inbox into the store every INBOX_DRAIN_INTERVAL."""
    rows: list[tuple[object, ...]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.IOException:  # the server is folding the inbox in right now
            time.sleep(0.1)
            continue
        rows = con.execute(sql).fetchall()
        con.close()
        if done(rows):
            break
        time.sleep(0.2)
    return rows


def items_of(body: dict[str, object]) -> list[str]:
    return [r["item_id"] for r in body["recommendations"]]  # type: ignore[index, union-attr]


def test_a_purchase_changes_the_next_answer_and_is_excluded(client: httpx.Client) -> None:
    before = client.get("/recommend", params={"user_id": "U00003", "k": 10}).json()
    bought = items_of(before)[0]
    response = client.post(
        "/events", json={"user_id": "U00003", "item_id": bought, "event_type": "purchase"}
    )
    assert response.status_code == 200 and response.json()["accepted"] == 1
    after = client.get("/recommend", params={"user_id": "U00003", "k": 10}).json()
    assert after["source"] == "als"
    assert bought not in items_of(after)
    assert items_of(after) != items_of(before)[1:]  # re-ranked by the new history, not just cut


def test_a_new_user_gets_personal_recommendations_from_first_events(client: httpx.Client) -> None:
    catalog = client.get("/recommend", params={"user_id": "nobody-yet", "k": 100}).json()
    assert catalog["source"] == "popular"
    category = catalog["recommendations"][0]["category"]
    liked = [r["item_id"] for r in catalog["recommendations"] if r["category"] == category][:3]
    events = [{"user_id": "fresh-shopper", "item_id": i, "event_type": "view"} for i in liked]
    assert client.post("/events", json={"events": events}).status_code == 200
    body = client.get("/recommend", params={"user_id": "fresh-shopper", "k": 10}).json()
    assert body["source"] == "als"
    assert not set(liked) & set(items_of(body))
    same = sum(r["category"] == category for r in body["recommendations"])
    assert same >= 5, body


def test_bad_events_are_refused_whole_with_row_and_column(client: httpx.Client) -> None:
    response = client.post(
        "/events",
        json={"events": [
            {"user_id": "u-bad", "item_id": "I00001", "qty": 1},
            {"user_id": "u-bad", "item_id": "I00002", "qty": -3},
            {"user_id": "u-bad", "item_id": "I00003", "ts": "not a time"},
        ]},
    )  # fmt: skip
    assert response.status_code == 422
    message = response.json()["message"]
    assert "request: row 2, column qty: negative quantity '-3'" in message
    assert "request: row 3, column ts: unparseable timestamp 'not a time'" in message
    body = client.get("/recommend", params={"user_id": "u-bad"}).json()
    assert body["source"] == "popular", "nothing of a refused batch was applied"
    too_many = [{"user_id": "u", "item_id": "i"}] * 10_001
    refused = client.post("/events", json={"events": too_many})
    assert refused.status_code == 422 and "at most 10000" in refused.json()["message"]


def test_accepted_events_reach_the_store(
    client: httpx.Client, shop_copy: tuple[Path, Path]
) -> None:
    response = client.post(
        "/events",
        json={"user_id": "durable-user", "item_id": "I00007", "ts": 1_700_000_000, "qty": 2},
    )
    assert response.status_code == 200, response.text
    rows = store_rows(
        shop_copy[0],
        "SELECT item_id, ts, qty, event_type FROM events WHERE user_id = 'durable-user'",
        lambda rows: bool(rows),
    )
    assert rows == [("I00007", 1_700_000_000, 2, "purchase")], "the event reached the store"


def test_a_new_item_is_recommendable_at_once(client: httpx.Client) -> None:
    neighbour = client.get("/similar-items", params={"item_id": "I00010", "k": 1}).json()
    template = client.get("/recommend", params={"user_id": "nobody", "k": 100}).json()
    ref = (
        next(r for r in template["recommendations"] if r["item_id"] == neighbour["item_id"])
        if any(r["item_id"] == neighbour["item_id"] for r in template["recommendations"])
        else template["recommendations"][0]
    )
    new_item = {
        "item_id": "NEW-001", "title": "Brand new thing", "category": ref["category"],
        "brand": ref["brand"], "price": 9.5, "img_url": "https://img.example.com/new.jpg",
    }  # fmt: skip
    response = client.post("/items", json=new_item)
    assert response.status_code == 200 and response.json()["new"] == ["NEW-001"]
    similar = client.get("/similar-items", params={"item_id": "NEW-001", "k": 5})
    assert similar.status_code == 200
    assert {r["category"] for r in similar.json()["recommendations"]} == {ref["category"]}
    # a shopper of that category and brand can be shown it
    found = False
    for user in ("U00001", "U00002", "U00004", "U00005", "U00006", "U00007"):
        body = client.get(
            "/recommend",
            params={"user_id": user, "k": 100, "category": ref["category"], "brand": ref["brand"]},
        ).json()
        if "NEW-001" in items_of(body):
            entry = next(r for r in body["recommendations"] if r["item_id"] == "NEW-001")
            assert entry["title"] == "Brand new thing" and entry["price"] == 9.5
            found = True
            break
    assert found
    bad = client.post("/items", json={"item_id": "NEW-002", "price": -1})
    assert bad.status_code == 422 and "negative price" in bad.json()["message"]


def test_trending_counts_move_the_popular_fallback(client: httpx.Client) -> None:
    before = client.get("/recommend", params={"user_id": "anonymous", "k": 100}).json()
    tail = items_of(before)[-1]
    events = [{"user_id": f"trend-{n}", "item_id": tail, "event_type": "view"} for n in range(400)]
    assert client.post("/events", json={"events": events}).status_code == 200
    after = client.get("/recommend", params={"user_id": "anonymous", "k": 3}).json()
    assert items_of(after)[0] == tail


def test_a_click_cites_the_answer_it_came_from(
    client: httpx.Client, shop_copy: tuple[Path, Path]
) -> None:
    answer = client.get("/recommend", params={"user_id": "U00005", "k": 5}).json()
    clicked = answer["recommendations"][2]["item_id"]
    click = {"user_id": "U00005", "item_id": clicked, "event_type": "click",
             "recommendation_id": answer["recommendation_id"], "position": 2}  # fmt: skip
    assert client.post("/events", json=click).status_code == 200
    bad = client.post("/events", json={**click, "position": -1})
    assert bad.status_code == 422
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            con = duckdb.connect(str(shop_copy[0]), read_only=True)
        except duckdb.IOException:
            time.sleep(0.1)
            continue
        rows = con.execute(
            "SELECT item_id, recommendation_id, position FROM events"
            " WHERE user_id = 'U00005' AND event_type = 'click' AND recommendation_id IS NOT NULL"
        ).fetchall()
        con.close()
        if rows:
            assert rows == [(clicked, answer["recommendation_id"], 2)]
            return
        time.sleep(0.2)
    pytest.fail("the click never reached the store")


def test_concurrent_posts_are_each_answered_and_all_stored(
    client: httpx.Client, shop_copy: tuple[Path, Path]
) -> None:
    """Posts that arrive together are validated and spooled together (serving/group_commit.py):
    each still gets its own answer, a bad one its own rows, and every accepted event lands."""

    async def post_all() -> list[httpx.Response]:
        def events(n: int) -> list[dict[str, object]]:
            qty = -1 if n == 7 else 1
            return [
                {"user_id": f"together-{n}", "item_id": f"I0001{k}", "qty": qty}
                for k in range(n % 3 + 1)
            ]

        async with httpx.AsyncClient(base_url=str(client.base_url), headers=AUTH) as http:
            posts = [http.post("/events", json={"events": events(n)}) for n in range(24)]
            return await asyncio.gather(*posts)

    answers = asyncio.run(post_all())
    for n, response in enumerate(answers):
        if n == 7:
            assert response.status_code == 422
            assert "request: rows 1, 2, column qty: negative quantity" in response.json()["message"]
        else:
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == n % 3 + 1
    expected = sum(n % 3 + 1 for n in range(24) if n != 7)
    rows = store_rows(
        shop_copy[0],
        "SELECT count(*) FROM events WHERE user_id LIKE 'together-%'",
        lambda rows: rows == [(expected,)],
    )
    assert rows == [(expected,)], f"{rows} of {expected} accepted events reached the store"
