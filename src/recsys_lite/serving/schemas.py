"""Request and response shapes, for the OpenAPI docs and for tests that check the contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_ID_LENGTH = 256


class ListQuery(BaseModel):
    """Query parameters shared by the endpoints that answer a list of items.

    The upper bound of ``k`` is a setting, so it comes in the validation context (``max_k``).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    k: int = Field(10, ge=1, description="number of items")
    use_faiss: bool = Field(True, description="search the Faiss index (false: exact search)")
    category: str | None = Field(None, max_length=MAX_ID_LENGTH, description="only this category")
    brand: str | None = Field(None, max_length=MAX_ID_LENGTH, description="only this brand")

    @field_validator("k")
    @classmethod
    def _at_most_max_k(cls, k: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_k")
        if limit is not None and k > limit:
            raise ValueError(f"at most {limit} items per request (MAX_RECOMMENDATIONS)")
        return k


class RecommendQuery(ListQuery):
    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="external user id")
    exclude_seen: bool = Field(True, description="leave out items the user already has")


class SimilarItemsQuery(ListQuery):
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="external item id")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    img_url: str | None = None


class RecommendResponse(BaseModel):
    user_id: str
    source: str
    recommendations: list[RecommendedItem]


class SimilarItemsResponse(BaseModel):
    item_id: str
    source: str
    recommendations: list[RecommendedItem]


class HealthResponse(BaseModel):
    status: str
    version: str
    model_type: str
    uptime_seconds: float


class ErrorResponse(BaseModel):
    error: str
    message: str
    details: list[dict[str, Any]] = []


MAX_BATCH = 10_000


class EventIn(BaseModel):
    """One event. ``ts`` accepts epoch seconds/ms/µs or ISO-8601 (default: now)."""

    user_id: str
    item_id: str
    ts: int | float | str | None = None
    qty: int | float | str | None = None
    event_type: str | None = None


class EventsIn(BaseModel):
    events: list[EventIn]


class ItemIn(BaseModel):
    item_id: str
    category: str | None = None
    brand: str | None = None
    price: float | str | None = None
    img_url: str | None = None
    title: str | None = None
    description: str | None = None


class ItemsIn(BaseModel):
    items: list[ItemIn]


class AcceptedResponse(BaseModel):
    accepted: int
    batch_id: str
    new: list[str] | None = None
