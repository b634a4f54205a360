"""The /search query, its OpenAPI description, and the shopper's taste from serving state."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from recsys_lite.data.ids import MAX_ID_LENGTH, normalise_id
from recsys_lite.ranking.filters import FilterParams
from recsys_lite.search.engine import MODES, Mode, SearchRequest

MAX_QUERY_LENGTH = 500  # a shopper's query, not a document: longer texts only cost encoding


class SearchQuery(FilterParams):
    """The query, and the filter parameters of /recommend (the same names, bounds and
    descriptions)."""

    q: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)] = Field(
        description="what the shopper typed: words, a product code, a brand"
    )
    k: int = Field(10, ge=1, description="number of items")
    user_id: str | None = Field(
        None, max_length=MAX_ID_LENGTH, description="a shopper: results lean to their taste"
    )
    mode: Mode = Field("hybrid", description=f"{', '.join(MODES)}: which rankings are fused")

    @field_validator("q")
    @classmethod
    def _has_words(cls, q: str) -> str:
        if not q.strip():
            raise ValueError("the query is empty")
        return q.strip()

    @field_validator("k")
    @classmethod
    def _at_most_max_k(cls, k: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_k")
        if limit is not None and k > limit:
            raise ValueError(f"at most {limit} items per request (MAX_RECOMMENDATIONS)")
        return k

    @field_validator("user_id")
    @classmethod
    def _valid_id(cls, user_id: str | None) -> str | None:
        return None if user_id is None else normalise_id(user_id)

    def request(
        self, taste_items: list[str] | None = None, taste_weights: list[float] | None = None
    ) -> SearchRequest:
        return SearchRequest(
            query=self.q, k=self.k, mode=self.mode, item_filter=self.item_filter(),
            taste_items=taste_items or (), taste_weights=taste_weights or (),
        )  # fmt: skip


class SearchHit(BaseModel):
    item_id: str
    score: float = Field(description="reciprocal rank fusion score")
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    img_url: str | None = None
    lexical_rank: int | None = Field(None, description="place in the BM25 ranking (1-based)")
    semantic_rank: int | None = Field(None, description="place in the embedding ranking")


class SearchResponse(BaseModel):
    query: str
    mode: str
    user_id: str | None
    personalised: bool = Field(description="whether the shopper's history reordered the results")
    results: list[SearchHit]


def parse_query(params: dict[str, str], max_k: int) -> SearchQuery:
    try:
        return SearchQuery.model_validate(params, context={"max_k": max_k})
    except ValidationError as exc:
        # the same 422 answer as every other query parameter error
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None


def shopper_taste(model: Any, online: Any, user_id: str) -> tuple[list[str], list[float]]:
    """The shopper's recent items and their weights: stored history plus events since
    training (nothing for a shopper nobody knows)."""
    folded = online.recent_history(user_id)
    if folded is not None:
        history, _ = folded
    elif model.knows_user(user_id):
        history = model.history(model.user_map.index(user_id))
    else:
        return [], []
    items: list[str] = model.item_map.ids[history.items].tolist()
    weights: list[float] = history.weights.astype(float).tolist()
    return items, weights
