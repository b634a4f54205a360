"""The event bus: how a batch accepted by one API replica reaches every other one and the worker.

Every backend carries the same messages (a batch id and the normalised events as Arrow IPC) and
offers the same two ways of reading:

* ``poll()`` — every batch, for every reader (each API replica keeps its online state whole);
* ``consume(group)`` / ``ack(group, ids)`` — each batch to one member of a group, redelivered
  until acknowledged (the worker folding batches into the store survives a crash).

The embedded backend needs nothing but the store's inbox folder, which the API writes anyway;
Redis Streams and Kafka let replicas on other processes or machines share events.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from recsys_lite.config import Settings
from recsys_lite.online.inbox import Inbox, position, stamp_of

STAMP_SETTLE_NS = 1_000_000_000
# Readers list again the batches stamped this long before the newest they have seen: a listing
# is not a snapshot, so a file renamed into place while the folder was being read may be
# missing from it even though a later-stamped one is there.
REREAD_WINDOW_NS = 10_000_000_000


@dataclass(frozen=True)
class Message:
    id: str  # the backend's position, what ``ack`` takes
    batch_id: str  # the same on every backend and in the inbox file name
    events: pa.Table


def to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_bytes(data: bytes) -> pa.Table:
    return ipc.open_stream(pa.py_buffer(data)).read_all()


class EventBus(ABC):
    @abstractmethod
    def publish(self, batch_id: str, events: pa.Table) -> None: ...

    @abstractmethod
    def poll(self, known: Container[str] = ()) -> list[Message]:
        """Batches published since the previous poll, by any replica (own ones included).
        ``known``: batch ids the caller has already applied; a backend may leave them out."""

    @abstractmethod
    def consume(self, group: str, consumer: str, count: int = 100) -> list[Message]:
        """Unacknowledged batches for this group: first any left pending by a crash."""

    @abstractmethod
    def ack(self, group: str, ids: list[str]) -> None: ...

    def close(self) -> None:
        return None


class InboxBus(EventBus):
    """Embedded: the inbox folder is the log; file names (stamped in the order they appear) are
    the positions. A replica remembers the positions it has delivered within the last
    ``REREAD_WINDOW_NS`` of stamps and everything older is behind its floor, so it delivers
    every batch exactly once."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._floor = ""
        self._delivered: set[str] = set()
        self._quiet_stamp: tuple[int, int] | None = None

    def publish(self, batch_id: str, events: pa.Table) -> None:
        return None  # the API already wrote the inbox file before answering

    def _read(self, after: str) -> list[Message]:
        messages = []
        for path in self.inbox.files_after(after):
            with contextlib.suppress(FileNotFoundError):  # moved to processed/ meanwhile
                messages.append(Message(position(path.name), path.name, pq.read_table(path)))
        return messages

    def poll(self, known: Container[str] = ()) -> list[Message]:
        # processed/ holds up to an hour of batches, so listing both folders ten times a second
        # would cost a busy shop more than the events themselves: two stats tell when nothing
        # has changed since a poll that found nothing new
        stamp = self.inbox.change_stamp()
        if stamp == self._quiet_stamp:
            return []
        # only new files are read, and not the caller's own: under load, reading every file of
        # the re-read window on each poll cost a sixth of the API's CPU
        messages, seen = [], []
        for path in self.inbox.files_after(self._floor):
            at = position(path.name)
            if at in self._delivered:
                continue
            if path.name not in known:
                try:
                    messages.append(Message(at, path.name, pq.read_table(path)))
                except FileNotFoundError:  # moved to processed/ meanwhile: read there next time
                    continue
            seen.append(at)
        if seen:
            self._delivered.update(seen)
            floor = f"{stamp_of(max(self._delivered)) - REREAD_WINDOW_NS:020d}"
            self._floor = max(self._floor, floor)
            self._delivered = {d for d in self._delivered if d > self._floor}
        # A stamp is trusted only once it is older than the file system's clock granularity:
        # a file landing in the same tick as the listing would not move it.
        settled = time.time_ns() - max(stamp) > STAMP_SETTLE_NS
        self._quiet_stamp = stamp if settled else None
        return messages

    def consume(self, group: str, consumer: str, count: int = 100) -> list[Message]:
        return self._read(self._group_cursor(group).read_text().strip())[:count]

    def ack(self, group: str, ids: list[str]) -> None:
        if ids:
            cursor = self._group_cursor(group)
            temporary = cursor.with_suffix(".tmp")
            temporary.write_text(max(ids))
            os.replace(temporary, cursor)

    def _group_cursor(self, group: str) -> Path:
        path = self.inbox.folder / f".cursor-{group}"
        if not path.exists():
            path.write_text("")
        return path

    def start_at_end(self) -> None:
        """Skip what is already there (a new replica's state comes from its artifact)."""
        existing = self.inbox.files_after("")
        self._floor = position(existing[-1].name) if existing else ""
        self._delivered = set()


class RedisBus(EventBus):
    """A Redis stream; replicas XREAD it, the worker reads it as a consumer group."""

    def __init__(self, url: str, stream: str, max_length: int = 1_000_000) -> None:
        import redis

        self.client: Any = redis.Redis.from_url(url)
        self.stream = stream
        self.max_length = max_length
        self._cursor = "$"

    def start_at_end(self) -> None:
        last = self.client.xrevrange(self.stream, count=1)
        self._cursor = last[0][0].decode() if last else "0-0"

    def publish(self, batch_id: str, events: pa.Table) -> None:
        self.client.xadd(
            self.stream,
            {"batch": batch_id, "events": to_bytes(events)},
            maxlen=self.max_length,
            approximate=True,
        )

    def _messages(self, entries: list[Any]) -> list[Message]:
        return [
            Message(entry_id.decode(), fields[b"batch"].decode(), from_bytes(fields[b"events"]))
            for entry_id, fields in entries
        ]

    def poll(self, known: Container[str] = ()) -> list[Message]:
        if self._cursor == "$":
            self.start_at_end()
        found = self.client.xread({self.stream: self._cursor}, count=1000)
        messages = self._messages(found[0][1]) if found else []
        if messages:
            self._cursor = messages[-1].id
        return messages

    def consume(self, group: str, consumer: str, count: int = 100) -> list[Message]:
        import redis

        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists already
            self.client.xgroup_create(self.stream, group, id="0", mkstream=True)
        # "0" returns this consumer's pending entries (delivered before a crash, never acked)
        for start in ("0", ">"):
            found = self.client.xreadgroup(group, consumer, {self.stream: start}, count=count)
            messages = self._messages(found[0][1]) if found else []
            if messages:
                return messages
        return []

    def ack(self, group: str, ids: list[str]) -> None:
        if ids:
            self.client.xack(self.stream, group, *ids)

    def close(self) -> None:
        self.client.close()


class KafkaBus(EventBus):
    """A Kafka topic (confluent-kafka). Replicas read every partition by direct assignment from
    the end (no group, so no join delay and nothing skipped while joining); the worker reads as
    a consumer group with manual commits."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        session_timeout_ms: int = 6000,
        retention_hours: float = 24.0,
    ) -> None:
        from confluent_kafka import Producer

        self.bootstrap = bootstrap
        self.topic = topic
        self.session_timeout_ms = session_timeout_ms
        self.retention_hours = retention_hours
        self._ensure_topic()
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        self._replica: Any = None
        self._groups: dict[str, Any] = {}

    def _ensure_topic(self) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import admin as kafka_admin

        NewTopic: Any = getattr(kafka_admin, "NewTopic")  # noqa: B009 (not re-exported for mypy)

        admin = kafka_admin.AdminClient({"bootstrap.servers": self.bootstrap})
        # No message can be deleted from a Kafka topic, so an erased shopper's events may stay
        # in it until retention removes them: the topic this product creates keeps messages
        # BUS_RETENTION_HOURS, and every consumer drops events of erased shoppers.
        retention_ms = str(int(self.retention_hours * 3_600_000))
        topic = NewTopic(self.topic, num_partitions=1, config={"retention.ms": retention_ms})
        for future in admin.create_topics([topic]).values():
            try:
                future.result(10)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    def _config(self, group: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
        }

    def start_at_end(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(self._config(f"replica-{uuid.uuid4().hex}"))
        partitions = consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        positions = []
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10
            )
            positions.append(TopicPartition(self.topic, partition, high))
        consumer.assign(positions)
        self._replica = consumer

    def publish(self, batch_id: str, events: pa.Table) -> None:
        self.producer.produce(self.topic, key=batch_id.encode(), value=to_bytes(events))
        self.producer.flush(10)

    def _drain(self, consumer: Any, count: int, timeout: float) -> list[Message]:
        messages = []
        for record in consumer.consume(num_messages=count, timeout=timeout):
            if record.error():
                continue
            position = f"{record.partition()}:{record.offset()}"
            messages.append(Message(position, record.key().decode(), from_bytes(record.value())))
        return messages

    def poll(self, known: Container[str] = ()) -> list[Message]:
        if self._replica is None:
            self.start_at_end()
        return self._drain(self._replica, 1000, 0.05)

    def consume(self, group: str, consumer: str, count: int = 100) -> list[Message]:
        from confluent_kafka import Consumer

        if group not in self._groups:
            member = Consumer(self._config(group))
            member.subscribe([self.topic])
            self._groups[group] = member
        return self._drain(self._groups[group], count, 1.0)

    def ack(self, group: str, ids: list[str]) -> None:
        if ids and group in self._groups:
            self._groups[group].commit(asynchronous=False)

    def close(self) -> None:
        for consumer in (self._replica, *self._groups.values()):
            if consumer is not None:
                consumer.close()
        self._replica, self._groups = None, {}
        self.producer.flush(5)


def create_bus(settings: Settings, inbox: Inbox) -> EventBus:
    if settings.event_bus == "redis":
        return RedisBus(settings.redis_url, settings.bus_topic)
    if settings.event_bus == "kafka":
        return KafkaBus(
            settings.kafka_bootstrap, settings.bus_topic,
            retention_hours=settings.bus_retention_hours,
        )  # fmt: skip
    return InboxBus(inbox)
