"""Redis stream entries holding an erased shopper's events, and their online state in Redis.

An entry is one batch of many shoppers' events, so it cannot be edited: each entry with the
shopper's rows is deleted (``XDEL``) and, when other rows remain, they are added again as a
new entry whose batch id says it is a rewrite, which API processes skip (they applied those
events when the original arrived) and the store holds once anyway.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from recsys_lite.config import Settings
from recsys_lite.data.subjects import subject_hash
from recsys_lite.online.bus import from_bytes, to_bytes
from recsys_lite.online.redis_client import client_for
from recsys_lite.online.redis_state import forget_in_redis

REWRITTEN_PREFIX = "rewritten-"


def scrub_stream(settings: Settings, key: str, subject: str) -> dict[str, Any]:
    import redis

    client: Any = redis.Redis.from_url(settings.redis_url)
    entries_rewritten = rows = 0
    try:
        last = "-"
        while True:
            page = client.xrange(settings.bus_topic, min=last, count=500)
            if not page:
                break
            for entry_id, fields in page:
                if b"events" not in fields:
                    continue
                events = from_bytes(fields[b"events"])
                if "user_id" not in events.column_names:
                    continue
                users = events.column("user_id").to_pylist()
                hits = [subject_hash(key, str(user)) == subject for user in users]
                if not any(hits):
                    continue
                kept = events.filter(pa.array([not hit for hit in hits]))
                client.xdel(settings.bus_topic, entry_id)
                if kept.num_rows:
                    batch = fields[b"batch"].decode()
                    client.xadd(
                        settings.bus_topic,
                        {"batch": f"{REWRITTEN_PREFIX}{batch}", "events": to_bytes(kept)},
                    )
                entries_rewritten += 1
                rows += sum(hits)
            last = "(" + page[-1][0].decode()
    finally:
        client.close()
    return {"stream_entries_rewritten": entries_rewritten, "rows_removed": rows}


def forget_online_state(settings: Settings, subject: str) -> dict[str, Any]:
    """The shopper's recent events and trending counts in the shared online state (every API
    process deletes them too when the erase message reaches it; this holds without one)."""
    held = forget_in_redis(client_for(settings.redis_url), settings.online_state_prefix, [subject])
    return {"online_state_deleted": held}
