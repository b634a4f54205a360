"""One contract, every event bus backend, each against a real server of its kind."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import recsys_lite.online.bus as bus_module
from recsys_lite.data.store import Store
from recsys_lite.jobs.worker import fold_bus_into_store
from recsys_lite.online.bus import EventBus, InboxBus, KafkaBus, RedisBus
from recsys_lite.online.inbox import Inbox

BusFactory = Callable[[], EventBus]


def batch(n: int) -> pa.Table:
    return pa.table(
        {
            "user_id": [f"u{n}"],
            "item_id": [f"i{n}"],
            "ts": pa.array([1_700_000_000 + n], pa.int64()),
            "qty": pa.array([1], pa.int32()),
            "event_type": ["view"],
        }
    )


@pytest.fixture(params=["embedded", "redis", "kafka"])
def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BusFactory]:
    topic = f"events-{uuid.uuid4().hex}"
    created: list[EventBus] = []

    def factory() -> EventBus:
        if request.param == "redis":
            bus: EventBus = RedisBus(request.getfixturevalue("redis_url"), topic)
        elif request.param == "kafka":
            bus = KafkaBus(request.getfixturevalue("kafka_bootstrap"), topic)
        else:
            bus = InboxBus(Inbox(tmp_path / "inbox"))
        created.append(bus)
        return bus

    yield factory
    for bus in created:
        bus.close()


def publish(bus: EventBus, n: int) -> str:
    table = batch(n)
    if isinstance(bus, InboxBus):  # embedded: the API's inbox file is the message
        return bus.inbox.write(table).name
    batch_id = f"events-{n}"
    bus.publish(batch_id, table)
    return batch_id


def poll_until(bus: EventBus, count: int, timeout: float = 20.0) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        seen += [m.batch_id for m in bus.poll()]
    return seen


def test_every_replica_sees_every_batch(make_bus: BusFactory) -> None:
    first, second = make_bus(), make_bus()
    for bus in (first, second):  # join (Kafka: group assignment) before anything is sent
        bus.poll()
    time.sleep(0.5)
    sent = [publish(first, n) for n in range(3)]
    assert poll_until(first, 3) == sent
    assert poll_until(second, 3) == sent
    assert second.poll() == []


def test_a_group_replays_what_a_crashed_consumer_did_not_ack(make_bus: BusFactory) -> None:
    producer = make_bus()
    sent = [publish(producer, n) for n in range(3)]
    crashed = make_bus()
    delivered = []
    deadline = time.monotonic() + 30
    while len(delivered) < 3 and time.monotonic() < deadline:
        delivered += crashed.consume("writers", "w1")
    assert [m.batch_id for m in delivered] == sent
    crashed.close()  # no ack: as if killed

    restarted = make_bus()
    replayed = []
    deadline = time.monotonic() + 30
    while len(replayed) < 3 and time.monotonic() < deadline:
        replayed += restarted.consume("writers", "w1")
    assert [m.batch_id for m in replayed] == sent
    assert [m.events.column("user_id")[0].as_py() for m in replayed] == ["u0", "u1", "u2"]
    restarted.ack("writers", [m.id for m in replayed])
    restarted.close()
    assert make_bus().consume("writers", "w1") == []


def test_the_worker_folds_replayed_batches_into_the_store_once(
    make_bus: BusFactory, tmp_path: Path
) -> None:
    bus = make_bus()
    for n in range(3):
        publish(bus, n)
    store = Store(tmp_path / "shop.db")
    inbox = bus.inbox if isinstance(bus, InboxBus) else Inbox(tmp_path / "worker-inbox")
    deadline = time.monotonic() + 30
    while store.path.exists() is False or store.counts()["events"] < 3:
        assert time.monotonic() < deadline
        fold_bus_into_store(bus, inbox, store, "w1")
    fold_bus_into_store(bus, inbox, store, "w1")  # nothing new, nothing doubled
    assert store.counts()["events"] == 3


def test_embedded_bus_lists_the_inbox_only_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox(tmp_path / "inbox")
    reader = InboxBus(inbox)
    listings: list[str] = []
    list_files = inbox.files_after

    def counted(cursor: str) -> list[Path]:
        listings.append(cursor)
        return list_files(cursor)

    monkeypatch.setattr(inbox, "files_after", counted)
    monkeypatch.setattr(bus_module, "STAMP_SETTLE_NS", 0)  # every stamp counts as settled
    assert reader.poll() == [] and reader.poll() == []
    assert len(listings) == 1, "an unchanged inbox is not listed again"

    first = inbox.write(batch(1)).name
    assert [m.batch_id for m in reader.poll()] == [first]
    # a batch the drainer moved to processed/ before this replica polled is still seen
    second = inbox.write(batch(2))
    (inbox.folder / "processed").mkdir(exist_ok=True)
    second.rename(inbox.folder / "processed" / second.name)
    assert [m.batch_id for m in reader.poll()] == [second.name]
    assert reader.poll() == []


def test_embedded_bus_sees_a_batch_written_in_the_same_tick_as_a_listing(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    reader = InboxBus(inbox)
    for n in range(20):  # no sleep: writes land within the file system's clock granularity
        assert reader.poll() == []
        name = inbox.write(batch(n)).name
        assert [m.batch_id for m in reader.poll()] == [name]


# Writes small batches until the stop file appears (at least three), or one large batch whose
# Parquet encoding and fsync take long enough for many small ones to be renamed meanwhile.
WRITER = """
import sys
from pathlib import Path
import pyarrow as pa
from recsys_lite.online.inbox import Inbox

folder, stop, rows = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
inbox = Inbox(folder)
table = pa.table({
    "user_id": [f"u{n}" for n in range(rows)], "item_id": [f"i{n}" for n in range(rows)],
    "ts": pa.array(range(rows), pa.int64()), "qty": pa.array([1] * rows, pa.int32()),
    "event_type": ["view"] * rows,
})
written = 0
while True:
    print(inbox.write(table).name, flush=True)
    written += 1
    if rows > 1 or (written >= 3 and stop.exists()):
        break
"""


def test_embedded_bus_readers_see_every_batch_of_concurrent_writers_exactly_once(
    tmp_path: Path,
) -> None:
    """A batch that takes long to write is renamed into place after batches begun later: no
    reader may skip it, or replicas disagree for as long as they run."""
    inbox = Inbox(tmp_path / "inbox")
    readers = [InboxBus(inbox), InboxBus(inbox)]
    for reader in readers:
        reader.start_at_end()
    stop = tmp_path / "stop"

    def start(rows: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", WRITER, str(inbox.folder), str(stop), str(rows)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    small = [start(1) for _ in range(3)]
    large = start(300_000)
    seen: list[list[str]] = [[], []]
    deadline = time.monotonic() + 60
    while large.poll() is None:
        assert time.monotonic() < deadline, "the large batch was never written"
        for reader, names in zip(readers, seen, strict=True):
            names += [m.batch_id for m in reader.poll()]
    stop.touch()
    written = set(large.communicate()[0].split())
    for writer in small:
        written |= set(writer.communicate(timeout=60)[0].split())
    assert len(written) >= 10
    caught_up = time.monotonic() + 10
    for reader, names in zip(readers, seen, strict=True):
        while set(names) != written and time.monotonic() < caught_up:
            names += [m.batch_id for m in reader.poll()]
        assert sorted(names) == sorted(written), "every batch, each exactly once"


def test_the_kafka_topic_keeps_messages_only_for_the_retention(kafka_bootstrap: str) -> None:
    """Messages cannot be deleted from a topic one by one, so an erased shopper's events leave
    it when retention removes them: the topic is created with BUS_RETENTION_HOURS."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    topic = f"events-{uuid.uuid4().hex}"
    KafkaBus(kafka_bootstrap, topic, retention_hours=2).close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = next(iter(admin.describe_configs([resource]).values())).result(10)
    assert configs["retention.ms"].value == str(2 * 3_600_000)


def test_embedded_bus_reads_each_new_file_once_and_not_the_callers_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox(tmp_path / "inbox")
    reader = InboxBus(inbox)
    reads: list[str] = []
    read_table = bus_module.pq.read_table

    def counted(path: Path, *args: object, **kwargs: object) -> pa.Table:
        reads.append(Path(path).name)
        return read_table(path, *args, **kwargs)

    monkeypatch.setattr(bus_module.pq, "read_table", counted)
    other, own = inbox.write(batch(1)).name, inbox.write(batch(2)).name
    assert [m.batch_id for m in reader.poll(known={own})] == [other]
    assert reads == [other], "the caller's own batch is not read"
    later = inbox.write(batch(3)).name
    assert [m.batch_id for m in reader.poll(known={own})] == [later]
    assert reads == [other, later], "a delivered file is not read again"
