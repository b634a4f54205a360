"""The HTTP API, against a real server process over a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import httpx
import pytest

from recsys_lite.serving.schemas import (
    ErrorResponse,
    HealthResponse,
    RecommendResponse,
    SimilarItemsResponse,
)


@pytest.fixture(scope="module")
def client(server: str) -> httpx.Client:
    return httpx.Client(base_url=server, timeout=10)


@pytest.fixture(scope="module")
def shopper(shop_db: Path) -> tuple[str, set[str]]:
    """The most active user and everything they interacted with."""
    con = duckdb.connect(str(shop_db), read_only=True)
    (user,) = con.execute(
        "SELECT user_id FROM events GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
    ).fetchone() or ("",)
    items = {
        r[0] for r in con.execute("SELECT item_id FROM events WHERE user_id = ?", [user]).fetchall()
    }
    con.close()
    return user, items


def test_recommend_for_a_known_user(client: httpx.Client, shopper: tuple[str, set[str]]) -> None:
    user, seen = shopper
    response = client.get("/recommend", params={"user_id": user, "k": 7})
    assert response.status_code == 200
    body = RecommendResponse.model_validate(response.json())
    assert body.user_id == user and body.source == "als"
    assert len(body.recommendations) == 7
    assert not seen & {r.item_id for r in body.recommendations}
    first = body.recommendations[0]
    assert first.title and first.category and first.brand and first.price and first.img_url
    scores = [r.score for r in body.recommendations]
    assert scores == sorted(scores, reverse=True)


def test_exact_and_index_paths_return_the_same_scores(
    client: httpx.Client, shopper: tuple[str, set[str]]
) -> None:
    user, _ = shopper
    via_index = client.get("/recommend", params={"user_id": user, "k": 10}).json()
    exact = client.get("/recommend", params={"user_id": user, "k": 10, "use_faiss": False}).json()
    assert [r["item_id"] for r in via_index["recommendations"]] == [
        r["item_id"] for r in exact["recommendations"]
    ]
    # the two paths sum in different orders: equal to float32 precision, which rounding to six
    # decimals cannot hide when a score sits on a rounding boundary
    for a, b in zip(via_index["recommendations"], exact["recommendations"], strict=True):
        assert abs(a["score"] - b["score"]) <= 2e-6


def test_unknown_user_gets_popular_items(client: httpx.Client) -> None:
    body = client.get("/recommend", params={"user_id": "brand-new-shopper ✓"}).json()
    assert body["source"] == "popular" and len(body["recommendations"]) == 10


def test_category_filter(client: httpx.Client, shopper: tuple[str, set[str]]) -> None:
    user, _ = shopper
    category = client.get("/recommend", params={"user_id": user}).json()["recommendations"][0][
        "category"
    ]
    body = client.get("/recommend", params={"user_id": user, "category": category}).json()
    assert body["recommendations"] and {r["category"] for r in body["recommendations"]} == {
        category
    }


@pytest.mark.parametrize(
    "params",
    [
        {"user_id": "U00001", "k": 0},
        {"user_id": "U00001", "k": 101},
        {"user_id": "U00001", "k": "ten"},
        {"user_id": "U00001", "use_faiss": "maybe"},
        {"user_id": ""},
        {"user_id": "x" * 300},
        {},
    ],
)
def test_bad_parameters_are_4xx_json(client: httpx.Client, params: dict[str, object]) -> None:
    response = client.get("/recommend", params=params)
    assert response.status_code == 422
    assert ErrorResponse.model_validate(response.json()).error == "invalid_input"


def test_k_upper_bound_is_accepted(client: httpx.Client) -> None:
    body = client.get("/recommend", params={"user_id": "nobody", "k": 100}).json()
    assert len(body["recommendations"]) == 100


def test_similar_items(client: httpx.Client, shopper: tuple[str, set[str]]) -> None:
    item = sorted(shopper[1])[0]
    response = client.get("/similar-items", params={"item_id": item, "k": 5})
    assert response.status_code == 200
    body = SimilarItemsResponse.model_validate(response.json())
    assert body.source == "als" and len(body.recommendations) == 5
    assert item not in {r.item_id for r in body.recommendations}


def test_unknown_item_is_a_404_json(client: httpx.Client) -> None:
    response = client.get("/similar-items", params={"item_id": "no-such-item"})
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "no-such-item" in response.json()["message"]


def test_health_and_probes(client: httpx.Client) -> None:
    health = HealthResponse.model_validate(client.get("/health").json())
    assert health.status == "ok" and health.model_type == "als" and health.uptime_seconds >= 0
    assert client.get("/live").status_code == 200
    # no worker has run beside this server, and nothing waits for the store
    assert client.get("/ready").json() == {
        "ready": True,
        "details": {"worker": None, "store": {"catalog": None, "swap": None}},
    }
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_openapi_documents_the_query_parameters(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    recommend = {p["name"]: p for p in paths["/recommend"]["get"]["parameters"]}
    shared = {
        "k", "use_faiss", "category", "brand", "exclude_categories", "exclude_brands",
        "exclude_ids", "min_price", "max_price", "diversity_lambda", "max_per_category",
    }  # fmt: skip
    assert set(recommend) == shared | {"user_id", "exclude_seen", "explain", "explain_top_k"}
    assert recommend["user_id"]["required"] and not recommend["k"]["required"]
    assert recommend["k"]["schema"]["maximum"] == 100 and recommend["k"]["schema"]["default"] == 10
    diversity = recommend["diversity_lambda"]["schema"]
    assert (diversity["minimum"], diversity["maximum"]) == (0, 1)
    assert recommend["explain_top_k"]["schema"]["maximum"] == 10
    assert recommend["exclude_seen"]["schema"]["default"] is True
    similar = {p["name"] for p in paths["/similar-items"]["get"]["parameters"]}
    assert similar == shared | {"item_id"}


def test_prometheus_metrics_count_requests(client: httpx.Client) -> None:
    client.get("/recommend", params={"user_id": "metrics-probe-user"})
    client.get("/recommend", params={"user_id": "x", "k": 0})
    text = client.get("/metrics").text
    assert 'recsys_requests_total{endpoint="/recommend",status="200"}' in text
    assert 'recsys_requests_total{endpoint="/recommend",status="422"}' in text
    assert 'recsys_request_latency_seconds_bucket{endpoint="/recommend"' in text
    assert 'recsys_fallbacks_total{reason="unknown_user"}' in text
    assert 'recsys_recommendations_served_total{endpoint="/recommend",source="popular"}' in text
    assert 'recsys_errors_total{endpoint="/recommend",error="invalid_input"}' in text
