"""Response shapes, for the OpenAPI docs and for tests that check the contract."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
