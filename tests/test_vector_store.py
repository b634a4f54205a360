"""Qdrant as the item-vector store: the same answers as Faiss and exact search, in the model
and through a real server."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from conftest import AUTH, free_port, running_server
from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.errors import VectorStoreError
from recsys_lite.models.artifact import load_artifact
from recsys_lite.training import train

if importlib.util.find_spec("qdrant_client") is None:
    REASON = "qdrant-client is not installed: pip install 'recsys-lite[qdrant]'"
    if os.environ.get("RECSYS_REQUIRE_ALL") == "1":
        pytest.fail(f"{REASON} (RECSYS_REQUIRE_ALL=1 requires every extra)", pytrace=False)
    pytest.skip(REASON, allow_module_level=True)

from recsys_lite.models.qdrant_store import QdrantStore

QDRANT = Settings(vector_store="qdrant")


def test_local_mode_finds_the_exact_top_k_with_exact_scores() -> None:
    rng = np.random.default_rng(0)
    # factor-like: uneven norms, as MF item vectors have (inner product, not cosine)
    items = (rng.normal(size=(3_000, 16)) * rng.lognormal(0, 0.5, (3_000, 1))).astype(np.float32)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    store = QdrantStore.open(items, "exact", QDRANT)
    truth = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    for batch in (queries, queries[:1]):  # the batch request and the single one
        found, scores = store.search(batch, 10)
        np.testing.assert_array_equal(found, truth[: len(batch)])
        expected = np.einsum("qd,qkd->qk", batch, items[found])
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    # asking for more than it holds pads nothing: every item, once
    assert sorted(store.search(queries[:1], 5_000)[0][0].tolist()) == list(range(3_000))


def test_a_shared_collection_is_completed_not_duplicated() -> None:
    """What replicas sharing a server do: the first fills the collection, a later one finds it
    whole, and one that finds a partial upload (a crash midway) completes it."""
    from qdrant_client import QdrantClient, models

    from recsys_lite.models.qdrant_store import ensure_collection

    client = QdrantClient(location=":memory:")
    vectors = np.random.default_rng(2).normal(size=(500, 8)).astype(np.float32)
    ensure_collection(client, "shared", vectors)
    ensure_collection(client, "shared", vectors)
    assert client.count("shared").count == 500
    client.delete("shared", points_selector=models.PointIdsList(points=list(range(300, 500))))
    ensure_collection(client, "shared", vectors)
    assert client.count("shared").count == 500
    query = vectors[400].tolist()
    assert client.query_points("shared", query=query, limit=1).points[0].id == int(
        np.argmax(vectors @ vectors[400])
    )


def test_a_model_served_from_qdrant_ranks_like_exact_search(als_artifact: Path) -> None:
    served = load_artifact(als_artifact, QDRANT).model
    assert served.user_index is not None and served.user_index.kind == "qdrant"
    assert served.item_index is not None and served.item_index.kind == "qdrant"
    rng = np.random.default_rng(1)
    mask = rng.random(len(served.item_map)) < 0.3
    for user in served.user_map.ids[:25].tolist():
        for item_mask in (None, mask):
            got = served.recommend(user, 10, item_mask=item_mask)
            exact = served.recommend(user, 10, item_mask=item_mask, use_index=False)
            assert got.items.tolist() == exact.items.tolist()
            np.testing.assert_allclose(got.scores, exact.scores, rtol=1e-5, atol=1e-5)
    for item in served.item_map.ids[:10].tolist():
        got_similar = served.similar_items(item, 10)
        exact_similar = served.similar_items(item, 10, use_index=False)
        assert got_similar is not None and exact_similar is not None
        assert got_similar.items.tolist() == exact_similar.items.tolist()


def test_items_added_after_loading_are_found(als_artifact: Path) -> None:
    served = load_artifact(als_artifact, QDRANT).model
    user = str(served.user_map.ids[0])
    query = served.user_vectors(np.array([0]))
    assert query is not None
    # an item placed far along the shopper's own direction must come first for them
    assert served.add_items(["NEW-A"], 10 * query) == ["NEW-A"]
    assert served.user_index is not None and len(served.user_index) == len(served.item_map)
    ranked = served.recommend(user, 5)
    assert served.item_map.ids[ranked.items[0]] == "NEW-A"
    assert ranked.items.tolist() == served.recommend(user, 5, use_index=False).items.tolist()


def test_an_unknown_store_or_an_unreachable_server_is_a_clear_error(als_artifact: Path) -> None:
    with pytest.raises(ValidationError, match="'faiss' or 'qdrant'"):
        Settings(vector_store="milvus")  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(vector_store="qdrant", qdrant_url=url, qdrant_timeout=2)
    with pytest.raises(VectorStoreError, match=f"Qdrant \\({url}\\): cannot open collection"):
        load_artifact(als_artifact, settings)


def test_training_saves_the_artifact_when_the_qdrant_server_is_down(
    shop_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = Settings(vector_store="qdrant", qdrant_url=url, qdrant_timeout=2)
    params = {"iterations": 2}
    train(Store(shop_db), "als", tmp_path / "model", params=params, test_size=0,
          settings=settings, show_progress=False)  # fmt: skip
    assert "vector store not filled at training" in caplog.text
    # the artifact is whole and serves from Faiss meanwhile
    assert load_artifact(tmp_path / "model", Settings()).model.user_index is not None


@pytest.fixture(scope="module")
def faiss_and_qdrant(
    shop_db: Path, als_artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """Two real servers over copies of one shop and one artifact, Faiss and Qdrant."""
    with ExitStack() as stack:
        clients = []
        for store in ("faiss", "qdrant"):
            folder = tmp_path_factory.mktemp(store)
            shutil.copy(shop_db, folder / "shop.db")
            env = {"VECTOR_STORE": store}
            url = stack.enter_context(
                running_server(als_artifact, folder / "shop.db", folder, env=env)
            )
            clients.append(stack.enter_context(httpx.Client(base_url=url, headers=AUTH)))
        yield clients[0], clients[1]


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["item_id"] for r in response.json()["recommendations"]]


def test_a_server_on_qdrant_answers_like_one_on_faiss(
    faiss_and_qdrant: tuple[httpx.Client, httpx.Client],
) -> None:
    faiss, qdrant = faiss_and_qdrant
    assert qdrant.get("/status").json()["model"]["index"] == "qdrant"
    assert faiss.get("/status").json()["model"]["index"] == "flat"
    category = qdrant.get("/items/I00001").json()["category"]
    for n in range(1, 21):
        for extra in ({}, {"category": category}):
            params = {"user_id": f"U{n:05d}", "k": 10, **extra}
            answer = ids(qdrant.get("/recommend", params=params))
            assert len(answer) == 10
            assert answer == ids(faiss.get("/recommend", params=params))
    for n in range(1, 11):
        params = {"item_id": f"I{n:05d}", "k": 10}
        assert ids(qdrant.get("/similar-items", params=params)) == ids(
            faiss.get("/similar-items", params=params)
        )
    # an item posted after start-up is searched by both stores alike
    new_item = {"item_id": "NEW-VS", "category": category, "brand": None, "price": 5.0}
    for client in (faiss, qdrant):
        assert client.post("/items", json=new_item).json()["new"] == ["NEW-VS"]
    params = {"item_id": "NEW-VS", "k": 10}
    similar = ids(qdrant.get("/similar-items", params=params))
    assert len(similar) == 10 and similar == ids(faiss.get("/similar-items", params=params))
    shown = False
    for n in range(1, 41):
        params = {"user_id": f"U{n:05d}", "k": 50, "category": category}
        answer = ids(qdrant.get("/recommend", params=params))
        assert answer == ids(faiss.get("/recommend", params=params))
        shown = shown or "NEW-VS" in answer
    assert shown  # the new item was among what the stores were asked to rank
