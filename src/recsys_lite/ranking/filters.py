"""Which catalog items a request allows: one filter object, parsed once per request.

The query parameters that make it (``FilterParams``) are shared by /recommend, /similar-items
and /search, so the three read, bound and document them alike. The catalog and the text index
each turn a filter into a boolean mask over their own items (``eligible_mask``), and retrieval
searches inside that mask, so a filter never shortens an answer that k eligible items could
fill.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recsys_lite.data.ids import normalise_id

# Comma-separated values per parameter: a page filters by a handful of categories, not by
# thousands, and each value costs a catalog-sized comparison.
MAX_FILTER_VALUES = 50
# Comma-separated filter values. Five of them at this length, with an id, still fit the
# server's 16 KB request line even percent-encoded at 12 bytes a character (longer ones were
# refused by the HTTP layer as a 400 without the error body).
MAX_FILTER_TEXT = 180
ValueList = Annotated[str | None, Field(max_length=MAX_FILTER_TEXT)]
# Masks cached per (field, value): only values the items have, and at most this many, so
# memory stays bounded whatever clients send.
MAX_CACHED_MASKS = 4_096


def split_values(text: str | None) -> tuple[str, ...]:
    """``"a, b,,a"`` → ``("a", "b")``: trimmed, empties dropped, first occurrence kept."""
    if text is None:
        return ()
    values = dict.fromkeys(part.strip() for part in text.split(","))
    values.pop("", None)
    return tuple(values)


@dataclass(frozen=True)
class ItemFilter:
    """Empty tuples and None bounds allow everything; values of one field are alternatives
    (category a or b), fields combine with and."""

    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    exclude_ids: tuple[str, ...] = ()
    min_price: float | None = None
    max_price: float | None = None

    @property
    def empty(self) -> bool:
        return self == NO_FILTER

    @property
    def has_price(self) -> bool:
        return self.min_price is not None or self.max_price is not None


NO_FILTER = ItemFilter()


class FilterParams(BaseModel):
    """The filter's query parameters, as every endpoint that answers items reads them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    category: ValueList = Field(None, description="only these categories (comma-separated)")
    brand: ValueList = Field(None, description="only these brands (comma-separated)")
    exclude_categories: ValueList = Field(None, description="never these categories")
    exclude_brands: ValueList = Field(None, description="never these brands")
    exclude_ids: ValueList = Field(None, description="never these item ids")
    min_price: float | None = Field(None, ge=0, allow_inf_nan=False, description="price at least")
    max_price: float | None = Field(None, ge=0, allow_inf_nan=False, description="price at most")

    @field_validator("category", "brand", "exclude_categories", "exclude_brands", "exclude_ids")
    @classmethod
    def _few_values(cls, text: str | None) -> str | None:
        if text is not None and len(split_values(text)) > MAX_FILTER_VALUES:
            raise ValueError(f"at most {MAX_FILTER_VALUES} comma-separated values")
        return text

    @field_validator("exclude_ids")
    @classmethod
    def _valid_ids(cls, text: str | None) -> str | None:
        if text is not None:
            for item_id in split_values(text):
                normalise_id(item_id)  # the one id rule: a bad id is refused, not ignored
        return text

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        low, high = self.min_price, self.max_price
        if low is not None and high is not None and low > high:
            raise ValueError("min_price is above max_price")
        return self

    def item_filter(self) -> ItemFilter:
        """The request's filter, ids normalised by the one id rule."""
        if self._unfiltered:
            return NO_FILTER  # the common request: nothing to split or compare
        return ItemFilter(
            categories=split_values(self.category),
            brands=split_values(self.brand),
            exclude_categories=split_values(self.exclude_categories),
            exclude_brands=split_values(self.exclude_brands),
            exclude_ids=tuple(normalise_id(i) for i in split_values(self.exclude_ids)),
            min_price=self.min_price,
            max_price=self.max_price,
        )

    @property
    def _unfiltered(self) -> bool:
        return (
            self.category is None
            and self.brand is None
            and self.exclude_categories is None
            and self.exclude_brands is None
            and self.exclude_ids is None
            and self.min_price is None
            and self.max_price is None
        )


def eligible_mask(
    item_filter: ItemFilter,
    available: np.ndarray,
    any_of: Callable[[str, tuple[str, ...]], np.ndarray],
    price: np.ndarray,
    position: Callable[[str], int | None],
) -> np.ndarray:
    """Available items the filter allows, over one collection of items: ``any_of(field,
    values)`` masks the items with one of the values, ``price`` is NaN where unknown (so it
    fails every bound) and ``position`` finds an item (None if the collection lacks it)."""
    result = available.copy()
    if item_filter.categories:
        result &= any_of("category", item_filter.categories)
    if item_filter.brands:
        result &= any_of("brand", item_filter.brands)
    if item_filter.exclude_categories:
        result &= ~any_of("category", item_filter.exclude_categories)
    if item_filter.exclude_brands:
        result &= ~any_of("brand", item_filter.exclude_brands)
    if item_filter.has_price:
        with np.errstate(invalid="ignore"):
            if item_filter.min_price is not None:
                result &= price >= item_filter.min_price
            if item_filter.max_price is not None:
                result &= price <= item_filter.max_price
    for item_id in item_filter.exclude_ids:
        index = position(item_id)
        if index is not None and index < len(result):
            result[index] = False
    return result
