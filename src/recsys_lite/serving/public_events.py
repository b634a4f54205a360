"""Events a browser may send without a secret, and what keeps them from poisoning the models.

The widget runs on shoppers' devices, where no secret stays secret, so ``view``, ``click`` and
``impression`` are accepted without a key, but only within what a person could do: at most
``PUBLIC_EVENTS_PER_USER`` events a second per shopper id and ``PUBLIC_EVENTS_PER_IP`` per
client address (each with a burst of a few seconds' worth), and only for items the shop has.
Many addresses inventing shoppers (a botnet) are beyond what a per-process limit can tell from
real traffic; that is a job for the shop's CDN or firewall in front of the API. Purchases,
carts and custom types move money and popularity, so they come from the shop's back end with
a key.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from recsys_lite.data.validation import DEFAULT_EVENT_TYPE
from recsys_lite.errors import DataValidationError, RateLimitedError
from recsys_lite.security.limits import RateLimiter
from recsys_lite.serving.runtime import ServingState

PUBLIC_EVENT_TYPES = frozenset({"view", "click", "impression"})


def is_public(event_types: list[str | None]) -> bool:
    return all(
        (kind or DEFAULT_EVENT_TYPE).strip().lower() in PUBLIC_EVENT_TYPES for kind in event_types
    )


class PublicEventPolicy:
    def __init__(self, per_user: float, per_address: float, burst_seconds: float) -> None:
        self.per_user = RateLimiter(per_user, per_user * burst_seconds)
        # one address inventing many shopper ids would pass the per-shopper limit
        self.per_address = RateLimiter(per_address, per_address * burst_seconds)

    def check(self, events: pa.Table, state: ServingState, address: str) -> None:
        """Refuse a batch with unknown items (row-level) or from a sender going too fast."""
        if not (self.per_user.enabled and self.per_address.enabled):
            raise RateLimitedError("events without a key are disabled (PUBLIC_EVENTS_PER_*)")
        items = events.column("item_id").to_pylist()
        known = state.model.item_map
        unknown = [
            row for row, item in enumerate(items, start=1)
            if item not in known and item not in state.catalog
        ]  # fmt: skip
        if unknown:
            raise DataValidationError(
                f"request: {len(unknown)} event(s) for items the shop does not have",
                details=[
                    {"file": "request", "column": "item_id", "reason": "unknown item",
                     "rows": unknown[:5], "values": [items[r - 1] for r in unknown[:5]],
                     "count": len(unknown)}
                ],
            )  # fmt: skip
        wait = self.per_address.take(address, cost=events.num_rows)
        if wait:
            raise RateLimitedError(
                f"too many events from one address: retry in {wait:.1f} s", retry_after=wait
            )
        for user, count in Counter(events.column("user_id").to_pylist()).items():
            wait = self.per_user.take(user, cost=count)
            if wait:
                raise RateLimitedError(
                    f"too many events for one shopper: retry in {wait:.1f} s", retry_after=wait
                )
