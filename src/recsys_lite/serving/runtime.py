"""What a serving process holds and keeps current: the model, the catalog, online state.

Requests read ``Runtime.state`` once and use that object to the end, so replacing it (a new
artifact) is one reference assignment: no request ever sees half of an old and half of a new
model. Background loops keep the state current: events from other replicas (the event bus),
the inbox folded into the store, and new artifacts (hot swap).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.data.validation import validate_event_requests, validate_items
from recsys_lite.errors import RecsysError, StoreBusyError
from recsys_lite.models.artifact import MANIFEST, Artifact, artifact_version, load_artifact
from recsys_lite.models.forgetting import forget_users
from recsys_lite.observability.metrics import observe_bus_batch, observe_request_events
from recsys_lite.online.bus import EventBus, create_bus
from recsys_lite.online.inbox import ERASE_PREFIX, ITEMS_PREFIX, Inbox, drain
from recsys_lite.online.items import TextNeighbours, estimate_vectors
from recsys_lite.online.redis_client import client_for
from recsys_lite.online.redis_state import create_online_state
from recsys_lite.online.state import OnlineStateBase
from recsys_lite.privacy.erase import Eraser
from recsys_lite.privacy.erased import ErasedShoppers
from recsys_lite.privacy.redis_streams import REWRITTEN_PREFIX
from recsys_lite.search.service import SearchService
from recsys_lite.serving.catalog import ITEM_SCHEMA, Catalog
from recsys_lite.serving.group_commit import Group
from recsys_lite.serving.idempotency import IdempotentAnswers, RedisIdempotentAnswers
from recsys_lite.serving.store_wait import ATTEMPT_SECONDS, StoreWait

log = logging.getLogger(__name__)
MAX_OWN_BATCHES = 10_000
# rows of events validated, or spooled into one inbox file, together (a request's own limit)
GROUP_MAX_ROWS = 10_000
MAX_UNPUBLISHED = 10_000  # batches awaiting a bus that is down; older ones reach replicas by
# the store (the worker's drain) instead


@dataclass
class ServingState:
    artifact: Artifact
    catalog: Catalog
    online: OnlineStateBase
    # full catalog rows this process accepted (posted here or by a replica), by item: a new
    # artifact may have been trained, or its catalog read, before they reached the store
    accepted_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the text index's nearest items, which place a brand-new item in the model (search/)
    text_neighbours: TextNeighbours | None = None

    @property
    def model(self) -> Any:
        return self.artifact.model

    @classmethod
    def load(cls, settings: Settings, *, without_catalog: bool = False) -> ServingState:
        """The artifact served and its catalog; a busy store raises ``StoreBusyError`` after one
        attempt (``without_catalog``: answer with ids only, never touching the store)."""
        artifact = load_artifact(settings.model_dir, settings)
        store = Store(settings.db_path, lock_timeout=ATTEMPT_SECONDS)
        catalog = (
            Catalog(artifact.model.item_map, None)
            if without_catalog
            else Catalog.from_store(artifact.model.item_map, store)
        )
        trained_until = artifact.manifest.get("trained_until_ts")
        online = create_online_state(artifact.model, settings, trained_until)
        return cls(artifact, catalog, online)

    def add_items(self, updates: pa.Table) -> list[str]:
        """Catalog updates into the catalog (merged onto what it holds) and, for new items, into
        the model and its indexes."""
        model = self.model
        rows = self.catalog.merge(updates)
        for row in rows.to_pylist():
            self.accepted_items[row["item_id"]] = row
        ids = rows.column("item_id").to_pylist()
        new_rows = rows.filter(pa.array([i not in model.item_map for i in ids]))
        vectors = (
            estimate_vectors(model, self.catalog.field, new_rows, self.text_neighbours)
            if new_rows.num_rows
            else None
        )
        added: list[str] = model.add_items(new_rows.column("item_id").to_pylist(), vectors)
        self.catalog.upsert(rows, model.item_map)
        self.online.grow()
        return added

    def carry_items(self, previous: ServingState) -> None:
        """Re-apply the catalog rows the previous state accepted that this one has not (a
        catalog row is the item's whole row, so applying one twice changes nothing)."""
        self.text_neighbours = self.text_neighbours or previous.text_neighbours
        # a copy: writes on the event loop may add to it while a swap loads in a thread
        accepted = dict(previous.accepted_items)
        rows = [row for item, row in accepted.items() if self.accepted_items.get(item) != row]
        if rows:
            self.add_items(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA))


def _remember(batches: OrderedDict[str, None], batch_id: str) -> None:
    """Add a batch id to a bounded record of recent ones (the oldest leave first)."""
    batches[batch_id] = None
    while len(batches) > MAX_OWN_BATCHES:
        batches.popitem(last=False)


def _artifact_signature(model_dir: Path) -> str:
    """Changes whenever another artifact is served there (a new one or a rollback)."""
    try:
        manifest = json.loads((model_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return ""
    return artifact_version(manifest)


class Runtime:
    def __init__(self, settings: Settings, state: ServingState | None = None) -> None:
        # One query per request: Faiss's OpenMP team would only spin on the cores the event
        # loop, the load balancer and DuckDB need (seen as seconds of delay under load).
        faiss.omp_set_num_threads(1)
        self.settings = settings
        # what waits for a store held by another process: the catalog at start-up, a swap
        self.catalog_wait, self.swap_wait = StoreWait(), StoreWait()
        self.state = state or self._load_at_start_up()
        self.search = SearchService(settings)
        self.state.text_neighbours = self.search.neighbours
        self.inbox = Inbox(settings.inbox)
        self.bus: EventBus = create_bus(settings, self.inbox)
        start_at_end = getattr(self.bus, "start_at_end", None)
        if start_at_end is not None:
            try:
                start_at_end()
            except Exception as exc:  # serve without the bus; its loop retries
                log.warning("event bus unreachable at start-up (%s); serving without it", exc)
        self.store = Store(settings.db_path, lock_timeout=5.0)
        # batches this process wrote (skipped when the bus echoes them back), bounded
        self._own_batches: OrderedDict[str, None] = OrderedDict()
        self._applied_from_bus: OrderedDict[str, None] = OrderedDict()  # event batches
        self._validations: Group[pa.Table, pa.Table] = Group(
            self._validate_together, lambda table: table.num_rows, GROUP_MAX_ROWS
        )
        self._acceptances: Group[pa.Table, str] = Group(
            self._accept_together, lambda table: table.num_rows, GROUP_MAX_ROWS
        )
        self._unpublished: deque[tuple[str, pa.Table]] = deque(maxlen=MAX_UNPUBLISHED)
        self.idempotent: IdempotentAnswers | RedisIdempotentAnswers = (
            RedisIdempotentAnswers(client_for(settings.redis_url), settings.online_state_prefix)
            if settings.shared_online_state
            else IdempotentAnswers()
        )
        self._last_message: float | None = None
        # the serving states of an experiment's variants (set by the app): erasure reaches them
        self.variant_states: list[ServingState] = []
        try:
            self.erased = ErasedShoppers.from_store(self.store)
        except RecsysError as exc:  # busy: the erase messages on the bus still arrive
            log.warning("erased shoppers not read from the store yet: %s", exc.message)
            self.erased = ErasedShoppers(settings.db_path)
        self._signature = _artifact_signature(settings.model_dir)
        self.swaps = 0
        self._tasks: list[asyncio.Task[None]] = []

    # ----- writes -----------------------------------------------------------------------------

    async def validate_events(self, events: pa.Table) -> pa.Table:
        """A request's events, validated in one DuckDB pass with the requests that arrive
        while the previous pass runs (serving/group_commit.py)."""
        return await self._validations.submit(events)

    async def accept_events(self, events: pa.Table) -> str:
        """Spool validated events durably, apply them here, publish them to the replicas;
        requests that arrive while a batch is being written share the next batch (one file,
        one fsync, one bus message) and its id."""
        return await self._acceptances.submit(events)

    async def _validate_together(self, requests: list[pa.Table]) -> list[pa.Table | Exception]:
        return list(await asyncio.to_thread(validate_event_requests, requests))

    async def _accept_together(self, requests: list[pa.Table]) -> list[str | Exception]:
        events = requests[0] if len(requests) == 1 else pa.concat_tables(requests)
        batch_id = await self._accept_now(events)
        return [batch_id] * len(requests)

    async def _accept_now(self, events: pa.Table) -> str:
        """The file write and its fsync run off the event loop, which keeps serving reads. Once
        the batch is durable the write is acknowledged whatever the bus does: a failed publish
        is retried by the bus loop, since answering an error would make the client send the
        same events again.
        """
        batch_id = (await asyncio.to_thread(self.inbox.write, events)).name
        # The embedded bus lists the inbox folder from another thread: it can see the file
        # between the rename and this line, and its poll can be applied before this coroutine
        # resumes. Applied twice, the shoppers' events would count double.
        if batch_id not in self._applied_from_bus:
            self._remember_own(batch_id)
            # a retried request may carry events of a shopper erased since: the tombstone holds
            self.state.online.apply(self.erased.drop_erased(events), batch_id)
        observe_request_events(events.num_rows)
        await self._publish(batch_id, events)
        return batch_id

    def _remember_own(self, batch_id: str) -> None:
        _remember(self._own_batches, batch_id)  # bounded: a bus that never echoes them back

    async def _publish(self, batch_id: str, table: pa.Table) -> None:
        try:
            await asyncio.to_thread(self.bus.publish, batch_id, table)
        except Exception as exc:
            log.warning("batch %s is stored but not yet published (%s); retrying", batch_id, exc)
            self._unpublished.append((batch_id, table))

    async def _republish(self) -> None:
        """Publish batches whose first publish failed, oldest first, until one fails again."""
        while self._unpublished:
            batch_id, table = self._unpublished[0]
            await asyncio.to_thread(self.bus.publish, batch_id, table)
            self._unpublished.popleft()

    def accept_items(self, raw: pa.Table) -> tuple[str, pa.Table]:
        items = validate_items(raw)
        batch_id = self.inbox.write(items, items=True).name
        self._remember_own(batch_id)
        try:
            self.bus.publish(batch_id, items)
        except Exception as exc:
            log.warning("catalog batch %s is stored but not yet published (%s)", batch_id, exc)
            self._unpublished.append((batch_id, items))
        return batch_id, items

    # ----- background loops -----------------------------------------------------------------

    def _load_at_start_up(self) -> ServingState:
        try:
            return ServingState.load(self.settings)
        except StoreBusyError as exc:
            wait = self.catalog_wait.failed(exc)
            log.warning("serving without item metadata until the store is free (%s)", exc)
            log.info("next attempt to read the catalog in %.1f s", wait)
            return ServingState.load(self.settings, without_catalog=True)

    @property
    def catalog_loaded(self) -> bool:
        return not self.catalog_wait.waiting

    def store_report(self) -> dict[str, Any]:
        """What is waiting for a busy store (None each when nothing is), for /ready and /status."""
        return {"catalog": self.catalog_wait.report(), "swap": self.swap_wait.report()}

    def start(self) -> None:
        loops = [self._poll_bus(), self._load_catalog(), self._finish_erasures()]
        if self.settings.inbox_drain_interval:
            loops.append(self._drain_inbox())
        if self.settings.model_watch_interval:
            loops.append(self._watch_model())
        self._tasks = [asyncio.create_task(loop) for loop in loops]
        self.search.start(self.state.artifact.path)

    async def _finish_erasures(self) -> None:
        """An erasure a crash interrupted is finished by the next process that starts."""
        try:
            eraser = Eraser(self.settings)
            if eraser.pending():
                for erasure in await asyncio.to_thread(eraser.resume_pending):
                    self.forget([erasure.subject], int(erasure.requested_at))
        except Exception:
            log.exception("interrupted erasures not finished yet; the next start retries")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.search.stop()
        self.bus.close()

    def apply_message(self, batch_id: str, table: pa.Table) -> None:
        self._last_message = time.time()
        if batch_id in self._own_batches:
            del self._own_batches[batch_id]
            return
        if batch_id.startswith(ERASE_PREFIX):
            self.forget(table.column("subject").to_pylist(), int(time.time()))
        elif batch_id.startswith(REWRITTEN_PREFIX):
            return  # a stream entry rewritten without an erased shopper: applied before
        elif batch_id.startswith(ITEMS_PREFIX):
            self.state.add_items(table)
            self.search.add_later(self.state.catalog.merge(table).to_pylist())
        else:
            self.state.online.apply(self.erased.drop_erased(table), batch_id)
            _remember(self._applied_from_bus, batch_id)
            observe_bus_batch(batch_id, table.num_rows)

    def bus_report(self) -> dict[str, Any]:
        """How far behind this process and the store are: inbox files not folded into the
        store yet (and the oldest one's age), and when this process last heard from the bus."""
        pending = self.inbox.ready_files()
        oldest = min((p.stat().st_mtime for p in pending if p.exists()), default=None)
        now = time.time()
        return {
            "kind": self.settings.event_bus,
            "inbox_files_pending": len(pending),
            "oldest_pending_seconds": None if oldest is None else round(now - oldest, 3),
            "last_message_seconds_ago": (
                None if self._last_message is None else round(now - self._last_message, 3)
            ),
        }

    def forget(self, subjects: list[str], erased_at: int) -> int:
        """Erased shoppers become unknown in this process at once: gone from the online state
        and from the served model (the erasure also publishes a model without them, which the
        watcher swaps in; until then this one answers for it)."""
        self.erased.add(subjects, erased_at)
        wanted = set(subjects)
        state = self.state
        held = state.online.forget_subjects(wanted, self.erased.subject)
        self._forget_in_model(state.model, wanted)
        for other in self.variant_states:  # an experiment's variants answer shoppers too
            other.online.forget_subjects(wanted, self.erased.subject)
            self._forget_in_model(other.model, wanted)
        return held

    def _forget_in_model(self, model: Any, subjects: set[str]) -> None:
        rows = self.erased.rows_in(model, subjects)
        if rows:
            forget_users(model, np.array(rows))

    async def _poll_bus(self) -> None:
        while True:
            try:
                await self._republish()
                polled = await asyncio.to_thread(self.bus.poll, self._own_batches.keys())
                for message in polled:
                    self.apply_message(message.batch_id, message.events)
            except Exception:  # keep serving; the next poll retries
                log.exception("event bus poll failed")
            await asyncio.sleep(self.settings.bus_poll_interval)

    async def _drain_inbox(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inbox_drain_interval)
            try:
                await asyncio.to_thread(drain, self.store, self.inbox)
            except RecsysError as exc:
                log.warning("inbox not folded into the store yet: %s", exc)
            except Exception:
                log.exception("inbox drain failed")

    async def _load_catalog(self) -> None:
        """Read the catalog the store was too busy to give at start-up."""
        while self.catalog_wait.waiting:
            await asyncio.sleep(max(0.0, self.catalog_wait.next_attempt_at - time.monotonic()))
            if not self.catalog_wait.waiting:  # a swap read it meanwhile
                return
            store = Store(self.settings.db_path, lock_timeout=ATTEMPT_SECONDS)
            model = self.state.model
            try:
                catalog = await asyncio.to_thread(Catalog.from_store, model.item_map, store)
            except StoreBusyError as exc:
                wait = self.catalog_wait.failed(exc)
                log.warning("store still busy, catalog retried in %.1f s: %s", wait, exc)
                continue
            except Exception:
                log.exception("catalog not loaded; retrying")
                self.catalog_wait.failed(RuntimeError("catalog not loaded"))
                continue
            previous = self.state
            if previous.model is model:  # else a swap brought a catalog of its own
                catalog.upsert(None, model.item_map)  # items added while it was read
                fresh = ServingState(previous.artifact, catalog, previous.online)
                fresh.carry_items(previous)
                self.state = fresh
            self.catalog_wait.succeeded()
            log.info("item metadata loaded from the store")

    async def _watch_model(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_watch_interval)
            signature = await asyncio.to_thread(_artifact_signature, self.settings.model_dir)
            if not signature or signature == self._signature or not self.swap_wait.due():
                continue
            try:
                await self.swap_in()
            except StoreBusyError as exc:
                wait = self.swap_wait.failed(exc)
                log.warning("new artifact waits for the store, retried in %.1f s: %s", wait, exc)
            except Exception:
                log.exception("new artifact not loaded; still serving the previous one")
                self._signature = signature  # do not retry a broken artifact every second
                self.swap_wait.succeeded()
            else:
                self.swap_wait.succeeded()
                self.catalog_wait.succeeded()  # the new state read the catalog

    async def swap_in(self) -> None:
        """Load the new artifact off the event loop, carry over the items and online events
        accepted since, switch."""
        previous = self.state
        fresh, forgotten = await asyncio.to_thread(self._load_carrying_items, previous)
        # a shopper erased while it loaded was forgotten in the previous model only: the fresh
        # one would serve them personally again until the next artifact
        missed = self.erased.subjects() - forgotten
        if missed:
            self._forget_in_model(fresh.model, missed)
        # Writes run on the event loop too, so from here to the switch nothing interleaves:
        # items accepted while the artifact loaded are carried now, and none after.
        fresh.carry_items(previous)
        trained_until = fresh.artifact.manifest.get("trained_until_ts")
        fresh.online.carry_over(previous.online, after_ts=trained_until)
        self.state = fresh
        self.search.start(fresh.artifact.path)  # its text index replaces the old once loaded
        # what was loaded, which may be newer than what the watcher saw
        self._signature = artifact_version(fresh.artifact.manifest)
        self.swaps += 1
        log.info("now serving %s from %s", fresh.model.name, fresh.artifact.manifest["created_at"])

    def _load_carrying_items(self, previous: ServingState) -> tuple[ServingState, set[str]]:
        """The new state, and the erased shoppers it was made to forget."""
        fresh = ServingState.load(self.settings)
        fresh.carry_items(previous)
        erased = self.erased.subjects()
        if erased:  # a model trained before an erasure finished still knows them
            self._forget_in_model(fresh.model, erased)
        return fresh, erased
