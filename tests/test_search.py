"""Catalog search (/search and `recsys-lite search`) against a real server and real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import AUTH, running_server
from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.search.build import SEARCH_FILE
from recsys_lite.training import train


@pytest.fixture(scope="module")
def search_shop(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> tuple[Path, Path]:
    """A copy of the shop (the tests post items) and an ALS artifact with its text index."""
    folder = tmp_path_factory.mktemp("search")
    db = folder / "recsys.db"
    shutil.copy(shop_db, db)
    settings = Settings(db_path=db, search_index="on")
    out = folder / "artifacts" / "current"
    train(Store(db), "als", out, params={"iterations": 8}, test_size=0, settings=settings,
          show_progress=False)  # fmt: skip
    return out, db


@pytest.fixture(scope="module")
def search_url(search_shop: tuple[Path, Path]) -> Iterator[str]:
    model_dir, db = search_shop
    with running_server(model_dir, db, model_dir.parent, env={"SEARCH_INDEX": "on"}) as url:
        # the index and the sentence model load in the background after start-up
        deadline = time.monotonic() + 180
        while True:
            answer = httpx.get(f"{url}/search", params={"q": "warm-up"}, timeout=30)
            if answer.status_code == 200:
                break
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "search_unavailable"
            assert time.monotonic() < deadline, answer.json()["message"]
            time.sleep(0.5)
        yield url


@pytest.fixture(scope="module")
def catalog(search_shop: tuple[Path, Path]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = Store(search_shop[1]).read_items().to_pylist()
    return rows


def search(url: str, **params: object) -> dict[str, object]:
    answer = httpx.get(f"{url}/search", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def results(body: dict[str, object]) -> list[dict[str, object]]:
    found = body["results"]
    assert isinstance(found, list)
    return found


def price(hit: dict[str, object]) -> float:
    return float(str(hit["price"]))


def test_a_product_code_finds_its_item_first(
    search_url: str, catalog: list[dict[str, object]]
) -> None:
    for row in catalog[::97]:
        top = results(search(search_url, q=row["item_id"], k=5))[0]
        assert top["item_id"] == row["item_id"]
        assert top["lexical_rank"] == 1
        assert top["title"] == row["title"]


def test_a_brand_name_finds_that_brands_items(
    search_url: str, catalog: list[dict[str, object]]
) -> None:
    brand = str(catalog[0]["brand"])
    word = brand.split()[0]  # "Quonu" of "Quonu Kitchen": the name a shopper types
    found = results(search(search_url, q=word, k=5))
    assert len(found) == 5
    assert all(word in str(hit["brand"]) for hit in found), found


def test_a_paraphrase_finds_items_it_shares_no_word_with(
    search_url: str, catalog: list[dict[str, object]]
) -> None:
    # no title, category or description of the shop says "coat" or "winter": only the meaning
    # of the words can lead to the jackets
    assert not any("coat" in json.dumps(row).lower() for row in catalog)
    found = results(search(search_url, q="a warm coat for winter", k=5))
    assert [hit["category"] for hit in found] == ["Outerwear"] * 5
    assert all(hit["lexical_rank"] is None for hit in found)
    lexical = results(search(search_url, q="a warm coat for winter", k=5, mode="lexical"))
    assert lexical == []


def test_filters_restrict_the_results(search_url: str) -> None:
    found = results(search(search_url, q="compact", k=20, category="Kitchen,Toys"))
    assert found and {hit["category"] for hit in found} <= {"Kitchen", "Toys"}
    assert results(search(search_url, q="compact", category="No such category")) == []


def test_the_filters_of_recommend_narrow_search_results_and_keep_k_hits(
    search_url: str, catalog: list[dict[str, object]]
) -> None:
    unfiltered = results(search(search_url, q="compact", k=40))
    assert len(unfiltered) == 40
    categories = sorted({str(hit["category"]) for hit in unfiltered})
    brands = sorted({str(hit["brand"]) for hit in unfiltered})
    prices = sorted(price(hit) for hit in unfiltered)
    low, high = prices[10], prices[30]

    def found(**filters: object) -> list[dict[str, object]]:
        hits = results(search(search_url, q="compact", k=10, **filters))
        assert len(hits) == 10, filters  # "compact" matches far more than 10 of each
        return hits

    assert {hit["brand"] for hit in found(brand=",".join(brands[:2]))} <= set(brands[:2])
    excluded = categories[:2]
    hits = found(exclude_categories=",".join(excluded))
    assert not {hit["category"] for hit in hits} & set(excluded)
    hits = found(exclude_brands=brands[0])
    assert all(hit["brand"] != brands[0] for hit in hits)
    # the ten best hits excluded: ten others take their places
    best = [str(hit["item_id"]) for hit in unfiltered[:10]]
    assert not {hit["item_id"] for hit in found(exclude_ids=",".join(best))} & set(best)
    hits = found(min_price=low, max_price=high)
    assert all(low <= price(hit) <= high for hit in hits)
    assert all(price(hit) >= high for hit in found(min_price=high))
    # all together: as many hits as eligible items, up to k (the semantic ranking holds all)
    rows = [row for row in catalog if row["category"] == categories[0]]
    brand = str(rows[0]["brand"])
    cheap = sorted(price(row) for row in rows)[len(rows) // 3]
    eligible = {
        str(row["item_id"]) for row in rows
        if row["brand"] != brand and price(row) <= cheap and row.get("available") is not False
    }  # fmt: skip
    hits = results(
        search(search_url, q="compact", k=10, category=categories[0], exclude_brands=brand,
               max_price=cheap)
    )  # fmt: skip
    assert eligible and len(hits) == min(10, len(eligible))
    assert {hit["item_id"] for hit in hits} <= eligible


def test_bad_filter_values_are_refused_with_422_and_the_one_error_body(search_url: str) -> None:
    for params in (
        {"min_price": "5", "max_price": "4"},
        {"min_price": "-1"},
        {"max_price": "nan"},
        {"exclude_ids": "I1,bad\x00id"},
        {"exclude_brands": ",".join(f"{n:02d}" for n in range(51))},  # 51 values, 152 chars
        {"category": "x" * 181},
    ):
        answer = httpx.get(f"{search_url}/search", params={"q": "pan", **params}, timeout=10)
        assert answer.status_code == 422, params
        body = answer.json()
        assert set(body) == {"error", "message", "details"}, body
        assert body["error"] == "invalid_input"


def test_a_shoppers_history_reorders_an_ambiguous_query(
    search_url: str, search_shop: tuple[Path, Path], catalog: list[dict[str, object]]
) -> None:
    from recsys_lite.models.artifact import load_artifact

    model = load_artifact(search_shop[0]).model
    category_of = {row["item_id"]: row["category"] for row in catalog}
    # the shopper with the most history in one category, and that category
    best: tuple[float, str, object] = (0.0, "", None)
    for user in range(min(len(model.user_map), 300)):
        items = model.item_map.ids[model.history(user).items].tolist()
        if len(items) < 20:
            continue
        categories = [category_of.get(i) for i in items]
        favourite = max(set(categories), key=categories.count)
        share = categories.count(favourite) / len(categories)
        if share > best[0]:
            best = (share, str(model.user_map.ids[user]), favourite)
    _, user_id, favourite = best
    # an adjective every category has: without a shopper the results mix categories
    anonymous = results(search(search_url, q="compact", k=10))
    personal_body = search(search_url, q="compact", k=10, user_id=user_id)
    personal = results(personal_body)
    assert personal_body["personalised"] is True
    share = [sum(hit["category"] == favourite for hit in r) for r in (anonymous, personal)]
    assert share[1] > share[0], (favourite, share)


def test_the_command_line_answers_as_the_api(
    search_url: str, search_shop: tuple[Path, Path]
) -> None:
    model_dir, db = search_shop
    assert (model_dir / SEARCH_FILE).is_file()
    query = {"q": "compact planter", "k": 5, "category": "Garden", "max_price": 60}
    api = search(search_url, **query)
    assert len(results(api)) == 5
    excluded = str(results(api)[0]["item_id"])
    api = search(search_url, **query, exclude_ids=excluded)
    command = subprocess.run(
        [
            sys.executable, "-m", "recsys_lite.cli", "search", "compact planter", "--k", "5",
            "--category", "Garden", "--max-price", "60", "--exclude-ids", excluded,
            "--model-dir", str(model_dir), "--db", str(db),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert command.returncode == 0, command.stderr
    printed = json.loads(command.stdout)
    assert printed == api


def test_a_posted_item_is_searchable_at_once_and_has_content_neighbours(
    search_url: str, catalog: list[dict[str, object]]
) -> None:
    pans = [row for row in catalog if row["category"] == "Kitchen"]
    brand_word = str(pans[0]["brand"]).split()[0]
    # no category and no brand: only its words say where it belongs
    new = {
        "item_id": "SKU-NEW-48213",
        "title": f"{brand_word} frying pan, non-stick",
        "description": "A pan for the kitchen stove: eggs, pancakes, steaks.",
    }
    posted = httpx.post(f"{search_url}/items", json=new, headers=AUTH, timeout=60)
    assert posted.status_code == 200, posted.text
    assert posted.json()["new"] == [new["item_id"]]

    top = results(search(search_url, q="SKU-NEW-48213", k=3))[0]
    assert top["item_id"] == new["item_id"] and top["title"] == new["title"]
    found = [hit["item_id"] for hit in results(search(search_url, q="non-stick frying pan"))]
    assert new["item_id"] in found[:3]

    similar = httpx.get(
        f"{search_url}/similar-items", params={"item_id": new["item_id"], "k": 10}, timeout=10
    )
    assert similar.status_code == 200, similar.text
    neighbours = similar.json()["recommendations"]
    kitchen = sum(hit["category"] == "Kitchen" for hit in neighbours)
    # a kitchen item is a sixth of the catalog: by chance about 1.5 of 10
    assert kitchen >= 7, [hit["title"] for hit in neighbours]


def test_without_a_text_index_search_answers_503_with_the_one_error_body(server: str) -> None:
    answer = httpx.get(f"{server}/search", params={"q": "pan"}, timeout=10)
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "search_unavailable"
    assert "SEARCH_INDEX" in body["message"]


def test_bad_queries_are_refused_with_422(search_url: str) -> None:
    for params in ({}, {"q": "   "}, {"q": "pan", "k": 0}, {"q": "pan", "mode": "fuzzy"}):
        answer = httpx.get(f"{search_url}/search", params=params, timeout=10)
        assert answer.status_code == 422, params
        assert answer.json()["error"] == "invalid_input"


def test_an_item_made_unavailable_is_no_longer_found(search_url: str) -> None:
    first = results(search(search_url, q="vintage", k=3))[0]
    hidden = {"item_id": first["item_id"], "available": False}
    assert httpx.post(f"{search_url}/items", json=hidden, headers=AUTH, timeout=60).is_success
    found = [hit["item_id"] for hit in results(search(search_url, q="vintage", k=20))]
    assert first["item_id"] not in found
    shown = {"item_id": first["item_id"], "available": True}
    assert httpx.post(f"{search_url}/items", json=shown, headers=AUTH, timeout=60).is_success
    assert results(search(search_url, q="vintage", k=3))[0]["item_id"] == first["item_id"]


def test_fuzzing_search_finds_no_server_error_and_no_answer_outside_the_schema(
    search_url: str, tmp_path: Path
) -> None:
    from test_fuzz import CHECKS

    schemathesis = Path(sys.executable).with_name("schemathesis")
    command = [
        str(schemathesis), "run", f"{search_url}/openapi.json", "--checks", CHECKS,
        "--include-path", "/search", "--mode", "all", "--max-examples", "50",
        "--seed", "20261207", "--workers", "1", "--phases", "examples,coverage,fuzzing",
        "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "passed" in run.stdout


def test_a_repeated_query_reuses_its_vector_and_the_cache_stays_bounded() -> None:
    import numpy as np

    from recsys_lite.search.embedder import Encoder

    encoder = Encoder(threads=1, cache_size=2)
    first = encoder.encode_query("strong coffee")
    assert encoder.encode_query("strong coffee") is first  # no second forward pass
    for text in ("running shoes", "skin care", "yoga mat"):
        encoder.encode_query(text)
    recomputed = encoder.encode_query("strong coffee")  # pushed out by newer queries
    assert recomputed is not first
    assert np.array_equal(recomputed, first)  # so the ranking is the same, cached or not
    with pytest.raises(ValueError):
        first[0] = 1.0  # one vector serves every request for it: none may change it
