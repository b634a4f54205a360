"""Filters, availability, diversity and explanations on /recommend and /similar-items, against
a real server over a real DuckDB file."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import httpx
import pytest

from conftest import served_shop_fixtures
from recsys_lite.serving.schemas import RecommendResponse

shop_copy, client = served_shop_fixtures(
    "filters", {"INBOX_DRAIN_INTERVAL": "0", "MODEL_WATCH_INTERVAL": "0"}
)


@pytest.fixture(scope="module")
def catalog(shop_copy: tuple[Path, Path]) -> dict[str, tuple[str, str, float]]:
    with duckdb.connect(str(shop_copy[0]), read_only=True) as con:
        rows = con.execute("SELECT item_id, category, brand, price FROM items").fetchall()
    return {item: (category, brand, price) for item, category, brand, price in rows}


@pytest.fixture(scope="module")
def shopper(shop_copy: tuple[Path, Path]) -> tuple[str, set[str]]:
    with duckdb.connect(str(shop_copy[0]), read_only=True) as con:
        (user,) = con.execute(
            "SELECT user_id FROM events GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        ).fetchone() or ("",)
        rows = con.execute("SELECT item_id FROM events WHERE user_id = ?", [user]).fetchall()
        seen = {r[0] for r in rows}
    return user, seen


def items_of(response: httpx.Response) -> list[dict[str, object]]:
    assert response.status_code == 200, response.text
    recommendations: list[dict[str, object]] = response.json()["recommendations"]
    return recommendations


def test_every_filter_holds_and_k_items_still_come_back(
    client: httpx.Client, catalog: dict[str, tuple[str, str, float]], shopper: tuple[str, set[str]]
) -> None:
    user, seen = shopper
    categories = sorted({c for c, _, _ in catalog.values()})
    wanted = set(categories[:2])
    excluded_brand = sorted({b for _, b, _ in catalog.values()})[0]
    params = {
        "user_id": user, "k": 12, "category": ",".join(sorted(wanted)),
        "exclude_brands": excluded_brand, "min_price": 5, "max_price": 80,
    }  # fmt: skip
    for use_faiss in (True, False):
        got = items_of(client.get("/recommend", params=params | {"use_faiss": use_faiss}))
        assert len(got) == 12
        for row in got:
            assert row["category"] in wanted and row["brand"] != excluded_brand
            assert 5 <= float(row["price"]) <= 80  # type: ignore[arg-type]
            assert row["item_id"] not in seen
    first = got[0]["item_id"]
    again = items_of(client.get("/recommend", params=params | {"exclude_ids": f"{first}, nope"}))
    assert first not in {r["item_id"] for r in again} and len(again) == 12
    other = items_of(
        client.get("/recommend", params={"user_id": user, "exclude_categories": categories[0]})
    )
    assert categories[0] not in {r["category"] for r in other}
    similar = items_of(
        client.get("/similar-items", params={"item_id": first, "category": categories[0], "k": 5})
    )
    assert len(similar) == 5 and {r["category"] for r in similar} == {categories[0]}


def test_exclude_seen_false_may_show_what_the_user_had(
    client: httpx.Client, shopper: tuple[str, set[str]]
) -> None:
    user, seen = shopper
    got = items_of(
        client.get("/recommend", params={"user_id": user, "k": 50, "exclude_seen": False})
    )
    assert seen & {r["item_id"] for r in got}


@pytest.mark.parametrize(
    "params",
    [
        {"min_price": 10, "max_price": 1},
        {"min_price": -1},
        {"diversity_lambda": 1.5},
        {"max_per_category": 0},
        {"explain_top_k": 11},
        {"category": ",".join(str(n) for n in range(51))},
        {"exclude_ids": "I" * 181},
        {"exclude_ids": "I1,\u200b"},
    ],
)
def test_bad_filter_values_are_refused(client: httpx.Client, params: dict[str, object]) -> None:
    response = client.get("/recommend", params={"user_id": "U1"} | params)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"


def test_unavailable_items_are_never_served(
    client: httpx.Client, shopper: tuple[str, set[str]]
) -> None:
    user, _ = shopper
    personal = [r["item_id"] for r in items_of(client.get("/recommend", params={"user_id": user}))]
    popular = [
        r["item_id"] for r in items_of(client.get("/recommend", params={"user_id": "nobody-x"}))
    ]
    gone = sorted(set(personal[:3] + popular[:3]))
    body = {"items": [{"item_id": item, "available": False} for item in gone]}
    assert client.post("/items", json=body).status_code == 200
    assert client.get(f"/items/{gone[0]}").json()["available"] is False
    for params in ({"user_id": user, "k": 50}, {"user_id": "nobody-x", "k": 50}):
        served = {r["item_id"] for r in items_of(client.get("/recommend", params=params))}
        assert not served & set(gone) and len(served) == 50
    similar = items_of(client.get("/similar-items", params={"item_id": personal[5], "k": 50}))
    assert not {r["item_id"] for r in similar} & set(gone)
    # back in stock: served again (null clears the field, which means available)
    client.post("/items", json={"items": [{"item_id": item, "available": None} for item in gone]})
    assert client.get(f"/items/{gone[0]}").json()["available"] is True
    served = [r["item_id"] for r in items_of(client.get("/recommend", params={"user_id": user}))]
    assert served == personal


def test_diversity_spreads_a_list_over_categories(
    client: httpx.Client, shopper: tuple[str, set[str]]
) -> None:
    user, _ = shopper
    capped = items_of(
        client.get("/recommend", params={"user_id": user, "k": 8, "max_per_category": 1})
    )
    categories = [r["category"] for r in capped]
    assert len(categories) == len(set(categories))

    def distinct(lam: float) -> int:
        params = {"user_id": user, "k": 10, "diversity_lambda": lam}
        return len({r["category"] for r in items_of(client.get("/recommend", params=params))})

    assert distinct(0.2) >= distinct(1.0)
    plain = items_of(client.get("/recommend", params={"user_id": user, "k": 10}))
    same = items_of(client.get("/recommend", params={"user_id": user, "diversity_lambda": 1.0}))
    assert plain == same  # the default is relevance only
    client.get("/similar-items", params={"item_id": plain[0]["item_id"], "diversity_lambda": 0.5})
    for _ in range(8):  # one list in a few is measured
        client.get("/recommend", params={"user_id": user})
    metrics = client.get("/metrics").text
    assert (
        'recsys_intra_list_diversity_count{endpoint="/recommend",measure="distinct_categories"}'
        in metrics
    )
    assert (
        'recsys_intra_list_diversity_count{endpoint="/recommend",measure="pairwise_distance"}'
        in metrics
    )


def test_explanations_name_the_users_own_items(
    client: httpx.Client, shopper: tuple[str, set[str]]
) -> None:
    user, seen = shopper
    params = {"user_id": user, "k": 5, "explain": True, "explain_top_k": 3}
    response = client.get("/recommend", params=params)
    # the numbers as a shop's page prints them: 0.8553, not 0.8553000092506409
    printed = re.findall(rb'"(similarity|contribution_pct)":(-?[0-9.eE+-]+)', response.content)
    assert printed and all(
        len(number.partition(b".")[2]) <= (4 if name == b"similarity" else 1)
        for name, number in printed
    ), printed
    body = RecommendResponse.model_validate(response.json())
    assert len(body.recommendations) == 5
    for item in body.recommendations:
        assert item.reason == "history" and item.because
        assert 1 <= len(item.because) <= 3
        assert {b.item_id for b in item.because} <= seen
        shares = [b.contribution_pct for b in item.because]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.05
        assert all(b.title for b in item.because)
    unknown = client.get("/recommend", params=params | {"user_id": "never-seen-before"}).json()
    assert unknown["source"] == "popular"
    assert all(r["reason"] == "popular" and "because" not in r for r in unknown["recommendations"])
    plain = client.get("/recommend", params={"user_id": user, "k": 5}).json()
    assert all("reason" not in r for r in plain["recommendations"])
