"""Hypothesis strategies the property tests share."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from recsys_lite.ranking.filters import ItemFilter


@st.composite
def item_filters(
    draw: st.DrawFn, categories: Sequence[str], brands: Sequence[str], ids: Sequence[str]
) -> ItemFilter:
    """Any combination of the filters a page can send, over the catalog's own values."""
    some = st.lists(st.sampled_from(categories), max_size=3).map(tuple)
    some_brands = st.lists(st.sampled_from(brands), max_size=4).map(tuple)
    price = st.none() | st.floats(0, 120, allow_nan=False)
    low, high = draw(price), draw(price)
    if low is not None and high is not None and low > high:
        low, high = high, low
    return ItemFilter(
        categories=draw(some),
        brands=draw(some_brands),
        exclude_categories=draw(some),
        exclude_brands=draw(some_brands),
        exclude_ids=tuple(draw(st.lists(st.sampled_from(ids), max_size=20))),
        min_price=low,
        max_price=high,
    )
