"""A service safe to expose: keys on writes, public events within what a person could do,
limits on bodies, rates and clocks, CORS only where configured, retries that do not duplicate.
Each test runs a real server process over a copy of the shop."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import copy_shop, free_port, running_server
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.errors import DataValidationError

STOREFRONT = "storefront-secret-0123456789"
CATALOG = "catalog-secret-0123456789"
ORIGIN = "https://shop.example"


@pytest.fixture(scope="module")
def served(
    shop_db: Path, als_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("secure")
    copy_shop(shop_db, als_artifact, folder)
    env = {
        "API_KEYS": f"storefront:{STOREFRONT}:events,catalog:{CATALOG}:catalog",
        "ADMIN_API_KEY": "", "MAX_BODY_BYTES": "20000", "CORS_ORIGINS": ORIGIN,
        "PUBLIC_EVENTS_PER_USER": "2", "PUBLIC_EVENTS_PER_IP": "10",
        "RATE_LIMIT_BURST_SECONDS": "2",
        "INBOX_DRAIN_INTERVAL": "0", "MODEL_WATCH_INTERVAL": "0",
    }  # fmt: skip
    with running_server(folder / "model", folder / "shop.db", folder, env) as url:
        yield url, folder


@pytest.fixture(scope="module")
def url(served: tuple[str, Path]) -> str:
    return served[0]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert set(body) == {"error", "message", "details"}
    return body


PURCHASE = {"user_id": "U00003", "item_id": "I00010", "event_type": "purchase"}


def test_each_key_may_do_what_its_scopes_say(url: str) -> None:
    error_of(httpx.post(f"{url}/events", json=PURCHASE), 401)
    error_of(httpx.post(f"{url}/events", json=PURCHASE, headers=bearer(CATALOG)), 403)
    assert httpx.post(f"{url}/events", json=PURCHASE, headers=bearer(STOREFRONT)).is_success
    item = {"item_id": "SEC-1", "title": "Locked box"}
    error_of(httpx.post(f"{url}/items", json=item), 401)
    assert httpx.post(f"{url}/items", json=item, headers=bearer(CATALOG)).is_success
    # no key has the admin scope here, so the admin API is off whatever the caller sends
    error_of(httpx.get(f"{url}/status", headers=bearer(STOREFRONT)), 403)


def test_an_unknown_key_is_refused_everywhere_and_never_logged(served: tuple[str, Path]) -> None:
    url, folder = served
    guess = "guessed-secret-XYZ-987"
    error_of(httpx.get(f"{url}/recommend?user_id=U00001", headers=bearer(guess)), 401)
    error_of(httpx.post(f"{url}/events", json=PURCHASE, headers=bearer(guess)), 401)
    assert httpx.get(f"{url}/recommend?user_id=U00001").is_success  # reads stay public
    logs = "".join(path.read_text() for path in folder.glob("server-*.log"))
    assert guess not in logs and STOREFRONT not in logs and CATALOG not in logs


def test_browser_events_need_no_key_but_known_items_and_a_human_pace(url: str) -> None:
    view = {"user_id": "browser-1", "item_id": "I00011", "event_type": "view"}
    assert httpx.post(f"{url}/events", json=view).is_success
    unknown = error_of(
        httpx.post(f"{url}/events", json={**view, "user_id": "browser-2", "item_id": "NOPE-9"}),
        422,
    )
    assert unknown["details"][0]["reason"] == "unknown item"  # type: ignore[index]
    flood = {"events": [{**view, "user_id": "browser-3"}] * 3}  # burst: 2 s of 2/s
    assert httpx.post(f"{url}/events", json=flood).is_success
    refused = httpx.post(f"{url}/events", json=flood)
    error_of(refused, 429)
    assert int(refused.headers["retry-after"]) >= 1
    # another shopper is not held back by the first one's flood
    assert httpx.post(f"{url}/events", json={**view, "user_id": "browser-4"}).is_success


def test_300_fake_shoppers_cannot_move_the_popular_list(url: str) -> None:
    def popular() -> list[str]:
        answer = httpx.get(f"{url}/recommend", params={"user_id": "nobody-at-all", "k": 10})
        return [r["item_id"] for r in answer.json()["recommendations"]]

    before = popular()
    target = "I00399"
    assert target not in before
    fakes = [{"user_id": f"bot-{n}", "item_id": target, "event_type": "purchase"}
             for n in range(300)]  # fmt: skip
    error_of(httpx.post(f"{url}/events", json={"events": fakes}), 401)
    # as views from 300 invented shoppers, ten a request: the address runs out of budget
    views = [{**fake, "event_type": "view"} for fake in fakes]
    started = time.monotonic()
    accepted = sum(
        10 * httpx.post(f"{url}/events", json={"events": views[n : n + 10]}).is_success
        for n in range(0, 300, 10)
    )
    elapsed = time.monotonic() - started
    assert accepted <= 20 + 10 * elapsed  # the burst, then 10 a second
    assert accepted < 300
    assert popular() == before


def test_bodies_over_the_limit_are_refused_before_parsing(url: str) -> None:
    big = {"events": [PURCHASE] * 1000}  # ~70 kB against a 20 kB limit
    body = error_of(httpx.post(f"{url}/events", json=big, headers=bearer(STOREFRONT)), 413)
    assert "MAX_BODY_BYTES" in str(body["message"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"events": ['
        for _ in range(1000):
            yield b'{"user_id": "U1", "item_id": "I00001"},'
        yield b'{"user_id": "U1", "item_id": "I00001"}]}'

    streamed = httpx.post(
        f"{url}/events", content=chunks(),
        headers={**bearer(STOREFRONT), "content-type": "application/json"},
    )  # fmt: skip
    error_of(streamed, 413)


def test_events_from_the_future_are_refused_row_by_row(url: str) -> None:
    future = int(time.time()) + 3600
    batch = {"events": [{**PURCHASE, "ts": int(time.time()) - 60}, {**PURCHASE, "ts": future}]}
    body = error_of(httpx.post(f"{url}/events", json=batch, headers=bearer(STOREFRONT)), 422)
    (detail,) = body["details"]  # type: ignore[misc]
    assert detail["rows"] == [2] and "future" in detail["reason"]
    soon = {**PURCHASE, "ts": int(time.time()) + 60}  # within MAX_CLOCK_SKEW
    assert httpx.post(f"{url}/events", json=soon, headers=bearer(STOREFRONT)).is_success


def test_event_files_from_the_future_are_refused(tmp_path: Path) -> None:
    now = int(time.time())
    pq.write_table(
        pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "ts": [now - 10, now + 86_400]}),
        tmp_path / "events.parquet",
    )
    with pytest.raises(DataValidationError) as refused:
        ingest(Store(tmp_path / "shop.db"), tmp_path / "events.parquet", show_progress=False)
    assert "row 2, column ts: more than 300 s in the future" in refused.value.message


def test_cors_answers_only_the_configured_origin(url: str) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Origin": ORIGIN}
    allowed = httpx.options(f"{url}/events", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == ORIGIN
    other = httpx.get(f"{url}/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_retried_write_is_acknowledged_once(served: tuple[str, Path]) -> None:
    url, folder = served
    inbox = folder / "inbox"
    before = len(list(inbox.glob("events-*")))
    headers = {**bearer(STOREFRONT), "Idempotency-Key": "order-1234"}
    first = httpx.post(f"{url}/events", json=PURCHASE, headers=headers)
    again = httpx.post(f"{url}/events", json=PURCHASE, headers=headers)
    assert first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert len(list(inbox.glob("events-*"))) == before + 1


def test_rate_limits_per_address_answer_429_with_retry_after(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    env = {"RATE_LIMIT_PER_IP": "1", "RATE_LIMIT_BURST_SECONDS": "2", "MODEL_WATCH_INTERVAL": "0"}
    with running_server(als_artifact, shop_db, tmp_path, env) as url:
        started = time.monotonic()
        responses = [httpx.get(f"{url}/health") for _ in range(12)]
        elapsed = time.monotonic() - started
        accepted = sum(response.is_success for response in responses)
        assert accepted <= 2 + elapsed + 1  # the burst of two, then one a second
        refused = next(response for response in responses if not response.is_success)
        error_of(refused, 429)
        assert int(refused.headers["retry-after"]) >= 1
        # a keyed client has its own budget
        assert httpx.get(f"{url}/health", headers=bearer("test-admin-key")).is_success


def test_a_publish_failure_after_the_durable_write_is_not_an_error(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    from conftest import require_component

    redis_server = require_component("redis-server")
    port = free_port()  # nothing listens there yet: every publish fails
    env = {"EVENT_BUS": "redis", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
           "MODEL_WATCH_INTERVAL": "0", "INBOX_DRAIN_INTERVAL": "0",
           "BUS_POLL_INTERVAL": "0.2"}  # fmt: skip
    shutil.copy(shop_db, tmp_path / "shop.db")
    with running_server(als_artifact, tmp_path / "shop.db", tmp_path, env) as url:
        posted = httpx.post(f"{url}/events", json=PURCHASE, headers=bearer("test-admin-key"))
        assert posted.status_code == 200, posted.text  # durable in the inbox: acknowledged
        assert list((tmp_path / "inbox").glob("events-*"))
        redis = subprocess.Popen(
            [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            import redis as redis_client

            client = redis_client.Redis.from_url(f"redis://127.0.0.1:{port}/0")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if client.xlen("recsys-events") >= 1:
                        break
                except redis_client.ConnectionError:
                    pass
                time.sleep(0.2)
            assert client.xlen("recsys-events") == 1, "the batch was published once redis came"
        finally:
            redis.terminate()
            redis.wait(timeout=10)


def test_keys_made_by_the_cli_work_and_the_file_holds_no_secret(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.toml"
    made = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "keys", "add", "backend", "--scopes",
         "events", "--file", str(keys_file)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    secret = made.stdout.strip()
    assert len(secret) >= 40 and secret not in keys_file.read_text()
    env = {"API_KEYS_FILE": str(keys_file), "MODEL_WATCH_INTERVAL": "0"}
    shutil.copy(shop_db, tmp_path / "shop.db")
    with running_server(als_artifact, tmp_path / "shop.db", tmp_path, env) as url:
        assert httpx.post(f"{url}/events", json=PURCHASE, headers=bearer(secret)).is_success
        error_of(httpx.post(f"{url}/items", json={"item_id": "K1"}, headers=bearer(secret)), 403)
