"""Filters never shorten a search: for any combination of filters and unavailable items, every
hit is eligible and the engine answers k hits whenever k eligible items match the query.

An item matches in the lexical ranking when it shares a word with the query (a BM25 score
above zero) and in the semantic ranking always (that ranking orders every eligible item by
meaning), so a lexical search answers min(k, eligible items sharing a word) hits and a
semantic or hybrid one min(k, eligible items).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_lite.data.store import Store
from recsys_lite.ranking.filters import ItemFilter
from recsys_lite.search.embedder import Encoder
from recsys_lite.search.engine import MODES, SearchRequest, run
from recsys_lite.search.index import TextIndex, tokenize
from recsys_lite.search.text import lexical_text, semantic_text
from strategies import item_filters

Row = dict[str, Any]


@pytest.fixture(scope="module")
def catalog(shop_db: Path) -> tuple[list[Row], np.ndarray, Encoder]:
    rows: list[Row] = Store(shop_db).read_items().to_pylist()
    encoder = Encoder(threads=1)
    return rows, encoder.encode([semantic_text(row) for row in rows]), encoder


def allows(item_filter: ItemFilter, row: Row) -> bool:
    """The filter's meaning, written out for one row."""
    price = row.get("price")
    low, high = item_filter.min_price, item_filter.max_price
    return (
        row.get("available") is not False
        and (not item_filter.categories or row.get("category") in item_filter.categories)
        and (not item_filter.brands or row.get("brand") in item_filter.brands)
        and row.get("category") not in item_filter.exclude_categories
        and row.get("brand") not in item_filter.exclude_brands
        and row["item_id"] not in item_filter.exclude_ids
        and (low is None or (price is not None and price >= low))
        and (high is None or (price is not None and price <= high))
    )


@st.composite
def searches(draw: st.DrawFn, rows: list[Row]) -> tuple[SearchRequest, set[str]]:
    categories = sorted({row["category"] for row in rows if row.get("category")})
    brands = sorted({row["brand"] for row in rows if row.get("brand")})
    ids = [row["item_id"] for row in rows]
    words = sorted({word for row in rows[:60] for word in tokenize([lexical_text(row)])[0]})
    item_filter = draw(item_filters(categories, brands, ids))
    # catalog words, and now and then one no item has
    query = " ".join(draw(st.lists(st.sampled_from([*words, "zyxwv"]), min_size=1, max_size=4)))
    request = SearchRequest(
        query, k=draw(st.integers(1, 40)), mode=draw(st.sampled_from(MODES)),
        item_filter=item_filter,
    )  # fmt: skip
    unavailable = set(draw(st.lists(st.sampled_from(ids), max_size=60)))
    return request, unavailable


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_search_answers_k_eligible_matches_whenever_k_exist(
    catalog: tuple[list[Row], np.ndarray, Encoder], data: st.DataObject
) -> None:
    rows, vectors, encoder = catalog
    request, unavailable = data.draw(searches(rows))
    shown = [row | {"available": row["item_id"] not in unavailable} for row in rows]
    index = TextIndex.build(shown, vectors)

    result = run(index, encoder, request)

    by_id = {row["item_id"]: row for row in shown}
    eligible = {row["item_id"] for row in shown if allows(request.item_filter, row)}
    query_words = set(tokenize([request.query])[0])
    shares_a_word = {
        row["item_id"] for row in shown if query_words & set(tokenize([lexical_text(row)])[0])
    }
    matching = eligible & shares_a_word if request.mode == "lexical" else eligible
    hits = [hit.item_id for hit in result.hits]
    assert len(hits) == len(set(hits)) == min(request.k, len(matching))
    assert set(hits) <= matching, [by_id[h] for h in set(hits) - matching]
    # a hit placed by BM25 shares a word with the query; a semantic search uses no BM25
    for hit in result.hits:
        if hit.lexical_rank is not None:
            assert request.mode != "semantic" and hit.item_id in shares_a_word


def test_a_filter_of_items_far_from_the_query_still_fills_the_semantic_ranking(
    catalog: tuple[list[Row], np.ndarray, Encoder],
) -> None:
    rows, vectors, encoder = catalog
    index = TextIndex.build(rows, vectors)
    query = encoder.encode_query("a warm coat for winter")
    similarity = vectors @ query
    by_meaning = np.argsort(-similarity, kind="stable")
    # none of the 200 nearest items is allowed: a search that filtered afterwards finds none
    allowed = np.ones(len(rows), dtype=bool)
    allowed[by_meaning[:200]] = False

    found = index.semantic(query, 50, allowed)

    # the 50 nearest allowed items, best first (items of the same text tie in any order)
    assert len(found) == 50 and allowed[found].all()
    assert np.allclose(similarity[found], similarity[by_meaning[200:250]], atol=1e-5)
