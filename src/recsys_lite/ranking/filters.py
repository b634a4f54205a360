"""Which catalog items a request allows: one filter object, parsed once per request.

The catalog turns it into a boolean mask over the model's items (``Catalog.eligible``), and
retrieval searches inside that mask, so a filter never shortens an answer that k eligible
items could fill.
"""

from __future__ import annotations

from dataclasses import dataclass

# Comma-separated values per parameter: a page filters by a handful of categories, not by
# thousands, and each value costs a catalog-sized comparison.
MAX_FILTER_VALUES = 50


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
