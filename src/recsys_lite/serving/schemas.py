"""Request and response shapes, for the OpenAPI docs and for tests that check the contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)

from recsys_lite.data.ids import MAX_ID_LENGTH, normalise_id
from recsys_lite.data.validation import MAX_POSITION, MAX_RECOMMENDATION_ID_LENGTH
from recsys_lite.ranking.explain import MAX_EXPLAIN_TOP_K
from recsys_lite.ranking.filters import FilterParams

MAX_BATCH = 10_000
MAX_TEXT_LENGTH = 10_000
# An id as a client sends it: the same bound in a query and in a body; normalised (trimmed,
# NFC) and refused for control characters by the one id rule (data/ids.py).
ExternalId = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(normalise_id)
]
# In a body, ids are checked with the file rules instead (row-level messages for a batch).
BodyId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Text = Annotated[str, Field(max_length=MAX_TEXT_LENGTH)]
# relevance only (see bench/diversity.py and the README for why)
DEFAULT_DIVERSITY_LAMBDA = 1.0
MAX_RECOMMENDATIONS_CAP = 1_000


class ListQuery(FilterParams):
    """Query parameters shared by the endpoints that answer a list of items: the filter's
    (``FilterParams``, the same for /search) and these.

    The upper bound of ``k`` is a setting, so it comes in the validation context (``max_k``).
    """

    k: int = Field(10, ge=1, description="number of items")
    use_faiss: bool = Field(True, description="search the Faiss index (false: exact search)")
    diversity_lambda: float = Field(
        DEFAULT_DIVERSITY_LAMBDA, ge=0, le=1,
        description="MMR trade-off: 1 = relevance only, lower = more varied lists",
    )  # fmt: skip
    max_per_category: int | None = Field(
        None, ge=1, le=MAX_RECOMMENDATIONS_CAP, description="at most this many items per category"
    )

    @field_validator("k")
    @classmethod
    def _at_most_max_k(cls, k: int, info: ValidationInfo) -> int:
        limit = (info.context or {}).get("max_k")
        if limit is not None and k > limit:
            raise ValueError(f"at most {limit} items per request (MAX_RECOMMENDATIONS)")
        return k

    @property
    def diversifies(self) -> bool:
        return self.diversity_lambda < 1.0 or self.max_per_category is not None


class RecommendQuery(ListQuery):
    user_id: ExternalId = Field(description="external user id")
    exclude_seen: bool = Field(True, description="leave out items the user already has")
    explain: bool = Field(False, description="add the user's past items behind each one")
    explain_top_k: int = Field(
        3, ge=1, le=MAX_EXPLAIN_TOP_K, description="past items per explanation"
    )


class SimilarItemsQuery(ListQuery):
    item_id: ExternalId = Field(description="external item id")


class Because(BaseModel):
    item_id: str
    title: str | None = None
    similarity: float = Field(
        description="the model's similarity of this past item to the one shown"
    )
    contribution_pct: float = Field(description="its share of the score's positive parts")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    img_url: str | None = None
    reason: Literal["history", "popular"] | None = Field(
        None, description="with explain=true: the user's own items, or popularity (unknown user)"
    )
    because: list[Because] | None = Field(
        None, description="with explain=true: the past items that contributed most"
    )


class RecommendResponse(BaseModel):
    user_id: str
    source: str
    recommendation_id: str = Field(description="cite it in events, with the item's position")
    variant: str | None = Field(
        None, description="the experiment variant shown (only while EXPERIMENT_FILE is set)"
    )
    recommendations: list[RecommendedItem]


class SimilarItemsResponse(BaseModel):
    item_id: str
    source: str
    recommendation_id: str = Field(description="cite it in events, with the item's position")
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


class EventIn(BaseModel):
    """One event. ``ts`` accepts epoch seconds/ms/µs or ISO-8601 (default: now)."""

    model_config = ConfigDict(extra="forbid")

    user_id: BodyId
    item_id: BodyId
    ts: int | float | Annotated[str, Field(max_length=64)] | None = None
    qty: int | float | Annotated[str, Field(max_length=32)] | None = None
    event_type: Annotated[str, Field(max_length=MAX_ID_LENGTH)] | None = None
    recommendation_id: (
        Annotated[
            str,
            Field(max_length=MAX_RECOMMENDATION_ID_LENGTH, description="the answer it came from"),
        ]
        | None
    ) = None
    position: (
        Annotated[
            int,
            Field(ge=0, le=MAX_POSITION, description="the item's place in that answer (0-based)"),
        ]
        | None
    ) = None


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class ItemIn(BaseModel):
    """A catalog row. Fields left out keep their stored values; an explicit null clears one."""

    model_config = ConfigDict(extra="forbid")

    item_id: BodyId
    category: Text | None = None
    brand: Text | None = None
    # bounds documented here, checked with the file rules (row-level messages, one rule)
    price: float | None = Field(
        None, description="finite, non-negative", json_schema_extra={"minimum": 0}
    )
    img_url: Text | None = Field(None, description="an http(s) URL or a relative path")
    title: Text | None = None
    description: Text | None = None
    available: bool | None = Field(None, description="false: never served (default true)")


class ItemsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)


class ItemOut(BaseModel):
    """A catalog item as the service now serves it."""

    item_id: str
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    img_url: str | None = None
    title: str | None = None
    description: str | None = None
    available: bool = Field(True, description="false: never served")
    recommendable: bool = Field(description="the served model can recommend it")


class TrainingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=64, description="a registered model (`recsys-lite models`)")
    params: dict[str, Any] | None = Field(None, description="its parameters (defaults if none)")
    tune_trials: int = Field(0, ge=0, le=500, description="Optuna trials before training")


class AcceptedResponse(BaseModel):
    accepted: int = Field(description="rows of this request, durable before this answer")
    batch_id: str = Field(
        description="the spooled batch holding them; event posts that arrive together share one"
    )
    new: list[str] | None = Field(None, description="POST /items: ids the catalog did not have")


def _one_or_batch(key: str) -> Discriminator:
    """A body is one row or ``{key: [rows]}``: validate it as the shape it has, so errors
    name that shape's fields instead of listing both shapes' complaints."""

    def shape(value: Any) -> str:
        has_key = key in value if isinstance(value, dict) else hasattr(value, key)
        return "batch" if has_key else "one"

    return Discriminator(shape)


EventsBody = Annotated[
    Annotated[EventIn, Tag("one")] | Annotated[EventsIn, Tag("batch")], _one_or_batch("events")
]
ItemsBody = Annotated[
    Annotated[ItemIn, Tag("one")] | Annotated[ItemsIn, Tag("batch")], _one_or_batch("items")
]
