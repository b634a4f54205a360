"""Which functions get a span in every process that recommends or moves events (the API, the
worker, stream-ingest): a model's retrieval, the popular fallback, the store's units of work and
the bus. The machinery is ``observability/tracing.py``; the API adds its ranking span
(``serving/instrumentation.py``)."""

from __future__ import annotations

from recsys_lite.data.store import Store
from recsys_lite.models.base import Recommender
from recsys_lite.observability.tracing import (
    bus_span,
    patch,
    retrieval_span,
    spanned,
    store_span,
)
from recsys_lite.online.bus import InboxBus, KafkaBus, RedisBus
from recsys_lite.online.state import OnlineStateBase


def instrument_online() -> None:
    for method in ("recommend", "recommend_history", "similar_items"):
        patch(Recommender, method, retrieval_span(method))
    patch(OnlineStateBase, "popular", spanned("retrieval", **{"recsys.method": "popular"}))
    patch(Store, "connect", store_span)
    for bus, kind in ((InboxBus, "embedded"), (RedisBus, "redis"), (KafkaBus, "kafka")):
        patch(bus, "publish", bus_span(kind, "publish", only_when_found=False))
        patch(bus, "ack", bus_span(kind, "settle", only_when_found=False))
        patch(bus, "poll", bus_span(kind, "receive", only_when_found=True))
        patch(bus, "consume", bus_span(kind, "receive", only_when_found=True))
