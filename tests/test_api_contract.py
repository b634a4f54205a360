"""The HTTP contract a shop's developer codes against: one error body everywhere, offline docs,
catalog writes that merge, and hostile values refused before anything is stored."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlparse

import duckdb
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import copy_shop, serving_client
from recsys_lite.config import Settings
from recsys_lite.serving.app import create_app
from recsys_lite.serving.errors import install_error_handlers


@pytest.fixture(scope="module")
def shop(
    shop_db: Path, als_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, Path]]:
    folder = tmp_path_factory.mktemp("contract")
    db, model = copy_shop(shop_db, als_artifact, folder)
    env = {"INBOX_DRAIN_INTERVAL": "0.3", "MODEL_WATCH_INTERVAL": "0"}
    with serving_client(model, db, folder, env) as http:
        yield http, db


@pytest.fixture(scope="module")
def client(shop: tuple[httpx.Client, Path]) -> httpx.Client:
    return shop[0]


def assert_error_body(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert set(body) == {"error", "message", "details"}
    assert body["error"] == code and isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def test_routing_errors_have_the_one_error_body(client: httpx.Client) -> None:
    body = assert_error_body(client.get("/no-such-thing"), 404, "not_found")
    assert "GET /no-such-thing" in str(body["message"])
    response = client.delete("/recommend")
    body = assert_error_body(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"] and "GET" in str(body["message"])
    assert_error_body(client.get("/items/I-unknown"), 404, "not_found")


def test_a_body_that_is_not_json_is_a_422_with_the_one_body(client: httpx.Client) -> None:
    response = client.post(
        "/events", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = assert_error_body(response, 422, "invalid_input")
    assert "not valid JSON" in str(body["message"])
    assert_error_body(client.get("/recommend", params={"k": 5}), 422, "invalid_input")


def test_an_unexpected_exception_has_the_one_body() -> None:
    app = FastAPI()
    install_error_handlers(app, lambda request, code: None)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail that must not leak")

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "internal error",
        "details": [],
    }


def test_every_operation_documents_the_error_body(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorResponse"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in ("404", "500"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"]["$ref"] == error_ref, (method, path, status)
            if "422" in operation["responses"]:  # not FastAPI's own {detail} shape
                content = operation["responses"]["422"]["content"]["application/json"]
                assert content["schema"]["$ref"] == error_ref, (method, path)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_nothing_from_other_hosts(client: httpx.Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    references += re.findall(r"""(?:url|spec-url)\s*:\s*["']([^"']+)["']""", html)
    assert references, "the page references its assets"
    own_host = urlparse(str(client.base_url)).netloc
    for reference in references:
        absolute = urljoin(str(client.base_url) + page, reference)
        assert urlparse(absolute).netloc == own_host, reference
        assert client.get(absolute).status_code == 200, reference
    assert not re.search(r"https?://(?!127\.0\.0\.1)", html.replace(str(client.base_url), ""))


def stored_item(db: Path, item_id: str) -> tuple[object, ...] | None:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT category, brand, price, img_url, title, description FROM items"
            " WHERE item_id = ?",
            [item_id],
        ).fetchone()


def wait_for_store(db: Path, item_id: str, expected: tuple[object, ...]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if stored_item(db, item_id) == expected:
                return
        except duckdb.IOException:  # the server is folding its inbox in right now
            pass
        assert time.monotonic() < deadline, stored_item(db, item_id)
        time.sleep(0.2)


def test_a_partial_item_update_keeps_the_other_fields(shop: tuple[httpx.Client, Path]) -> None:
    client, db = shop
    full = {
        "item_id": "NEW-1", "category": "Toys", "brand": "Zizi", "price": 3.5,
        "img_url": "https://cdn.shop.example/new-1.png", "title": "Kite", "description": "Red",
    }  # fmt: skip
    assert client.post("/items", json=full).status_code == 200
    assert client.post("/items", json={"item_id": "NEW-1", "price": 4.0}).status_code == 200
    item = client.get("/items/NEW-1").json()
    assert item == {**full, "price": 4.0, "available": True, "recommendable": True}
    # an explicit null clears that field only
    assert client.post("/items", json={"item_id": "NEW-1", "brand": None}).status_code == 200
    assert client.get("/items/NEW-1").json() == {
        **full, "price": 4.0, "brand": None, "available": True, "recommendable": True
    }  # fmt: skip
    # the store follows the same rule once the server folds its inbox in
    wait_for_store(db, "NEW-1", ("Toys", None, 4.0, full["img_url"], "Kite", "Red"))
    # and what is served is what GET shows
    similar = client.get("/similar-items", params={"item_id": "NEW-1", "k": 3})
    assert similar.status_code == 200


def test_an_existing_item_updated_in_part_keeps_its_metadata(client: httpx.Client) -> None:
    before = client.get("/items/I00001").json()
    assert before["title"] and before["category"]
    assert client.post("/items", json={"item_id": "I00001", "price": 9.99}).status_code == 200
    after = client.get("/items/I00001").json()
    assert after == {**before, "price": 9.99}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"item_id": "X1", "price": NaN}', "not a finite number"),
        ('{"item_id": "X1", "price": Infinity}', "not a finite number"),
        ({"item_id": "X1", "price": -1}, "negative price"),
        ({"item_id": "X1", "img_url": "javascript:alert(1)"}, "not an http(s) URL"),
        ({"item_id": "X1\u0000"}, "control or invisible character"),
        ({"items": []}, "at least 1 item"),
        ({"item_id": "x" * 257}, "at most 256 characters"),
    ],
)
def test_hostile_catalog_writes_are_refused_and_nothing_is_stored(
    client: httpx.Client, body: dict[str, object] | str, fragment: str
) -> None:
    # NaN and Infinity are what Python's and JavaScript's encoders emit for such numbers
    response = (
        client.post("/items", content=body, headers={"content-type": "application/json"})
        if isinstance(body, str)
        else client.post("/items", json=body)
    )
    message = assert_error_body(response, 422, response.json()["error"])["message"]
    assert fragment in str(message)
    assert client.get("/items/X1").status_code == 404


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"user_id": "U1\u0000", "item_id": "I00001"}, "control or invisible character"),
        ({"user_id": "U1", "item_id": "I00001\n"}, "control or invisible character"),
        ({"user_id": " ", "item_id": "I00001"}, "empty id"),
        ({"user_id": "U1", "item_id": "I00001", "qty": "NaN"}, "not a finite number"),
    ],
)
def test_hostile_events_are_refused(
    client: httpx.Client, event: dict[str, object], fragment: str
) -> None:
    response = client.post("/events", json=event)
    assert fragment in str(assert_error_body(response, 422, "invalid_data")["message"])


def test_an_empty_event_batch_is_a_422(client: httpx.Client) -> None:
    assert_error_body(client.post("/events", json={"events": []}), 422, "invalid_input")


def test_query_ids_follow_the_same_rule(client: httpx.Client) -> None:
    spaced = client.get("/recommend", params={"user_id": " U00001 ", "k": 3}).json()
    plain = client.get("/recommend", params={"user_id": "U00001", "k": 3}).json()
    assert spaced["recommendation_id"] != plain["recommendation_id"]  # one per answer
    del spaced["recommendation_id"], plain["recommendation_id"]
    assert spaced == plain and spaced["source"] == "als"
    assert_error_body(
        client.get("/recommend", params={"user_id": "U1\u0000"}), 422, "invalid_input"
    )


def test_serve_prints_the_urls_to_open(shop: tuple[httpx.Client, Path]) -> None:
    client, db = shop
    (log,) = db.parent.glob("server-*.log")
    printed = log.read_text()
    assert f"{client.base_url}/docs" in printed and "/recommend?user_id=" in printed


def test_admin_endpoints_are_off_without_a_key(shop_db: Path, als_artifact: Path) -> None:
    settings = Settings(db_path=shop_db, model_dir=als_artifact, admin_api_key=None)
    with TestClient(create_app(settings)) as http:
        body = assert_error_body(http.get("/status"), 403, "forbidden")
        assert "ADMIN_API_KEY" in str(body["message"])
        # without keys, nothing writes the catalog or server-side events either
        assert_error_body(http.post("/items", json={"item_id": "X1"}), 403, "forbidden")
        purchase = {"user_id": "U1", "item_id": "I00001", "event_type": "purchase"}
        assert_error_body(http.post("/events", json=purchase), 403, "forbidden")


def test_a_profile_says_what_the_shop_knows_about_a_shopper(client: httpx.Client) -> None:
    body = client.get("/users/U00003/profile", params={"recent_limit": 3}).json()
    assert body["events"] == sum(body["by_type"].values()) > 0
    assert body["first_event_ts"] <= body["last_event_ts"]
    assert len(body["recent"]) == 3 and all(row["title"] for row in body["recent"])
    assert [r["ts"] for r in body["recent"]] == sorted(
        (r["ts"] for r in body["recent"]), reverse=True
    )
    shares = [row["share"] for row in body["top_categories"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    assert body["personalisation"] == {
        "personalised": True,
        "model": "als",
        "reason": "trained on their events",
    }
    assert_error_body(client.get("/users/nobody-here/profile"), 404, "not_found")
    anonymous = httpx.get(f"{client.base_url}/users/U00003/profile")
    assert_error_body(anonymous, 401, "unauthorized")


def test_the_cli_answers_profile_and_status_like_the_api(
    shop: tuple[httpx.Client, Path],
) -> None:
    client, db = shop
    model_dir = db.parent / "model"

    def cli(*args: str) -> dict[str, object]:
        run = subprocess.run(
            [sys.executable, "-m", "recsys_lite.cli", *args, "--db", str(db),
             "--model-dir", str(model_dir)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        answer: dict[str, object] = json.loads(run.stdout)
        return answer

    api_profile = client.get("/users/U00009/profile").json()
    assert cli("profile", "--user-id", "U00009") == api_profile
    api_status, cli_status = client.get("/status").json(), cli("status")
    assert set(cli_status) == set(api_status)
    # items posted to this server since training are served, but not in the artifact yet
    cli_model, api_model = dict(cli_status["model"]), dict(api_status["model"])
    assert api_model.pop("items") >= cli_model.pop("items")
    assert cli_model == api_model
    assert cli_status["online"] is None and api_status["online"]["swaps"] == 0
    kernels = api_status["compiled_kernels"]
    assert set(kernels) == {"explanations", "diversity", "filtered_retrieval"}
    assert kernels == cli_status["compiled_kernels"]


def test_the_pages_reads_keep_guards_errors_and_metrics(
    shop_db: Path, als_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/recommend and /similar-items skip FastAPI's router (serving/hot_reads.py): a key
    is still checked, a fault still answers the one body and is counted, other methods
    still reach FastAPI."""
    from recsys_lite.serving import lists

    settings = Settings(db_path=shop_db, model_dir=als_artifact, admin_api_key="a" * 32)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert http.get("/recommend", params={"user_id": "U00003"}).status_code == 200
        wrong_key = {"Authorization": "Bearer " + "b" * 32}
        refused = http.get("/recommend", params={"user_id": "U00003"}, headers=wrong_key)
        assert_error_body(refused, 401, "unauthorized")
        assert_error_body(http.get("/similar-items", params={"item_id": "nope"}), 404, "not_found")
        assert_error_body(http.post("/similar-items"), 405, "method_not_allowed")

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret detail that must not leak")

        monkeypatch.setattr(lists, "recommend", broken)
        response = http.get("/recommend", params={"user_id": "U00003"})
        assert response.json() == {
            "error": "internal_error",
            "message": "internal error",
            "details": [],
        }
        assert response.status_code == 500
        metrics = http.get("/metrics").text
        assert 'recsys_errors_total{endpoint="/recommend",error="internal"} 1.0' in metrics
        assert 'recsys_requests_total{endpoint="/recommend",status="500"} 1.0' in metrics
        assert 'recsys_requests_total{endpoint="/recommend",status="401"} 1.0' in metrics
