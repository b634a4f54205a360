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
