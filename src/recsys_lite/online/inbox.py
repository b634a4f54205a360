"""A folder of event files: what the API writes before it answers, and what gets ingested.

Writers create a file under a dot-name and rename it into place, so a reader never sees half a
file; the rename is fsynced, so an acknowledged event survives a crash. The name is stamped when
the file is renamed, under a lock shared by every process writing the folder, so names appear in
the order they sort: a batch that took long to write cannot appear behind one named later.
``drain`` ingests each file in its own transaction together with the file's content hash, then
moves it to ``processed/``: a crash at any point either leaves the file to be ingested again
(its rows were not committed) or leaves a hash that marks it done, so every file lands exactly
once.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys_lite.config import get_settings
from recsys_lite.data import archive
from recsys_lite.data.ingest import EVENT_SUFFIXES, ingest
from recsys_lite.data.store import Store
from recsys_lite.errors import DataValidationError, StoreBusyError
from recsys_lite.files import fsync_directory
from recsys_lite.observability.metrics import FILES_REJECTED, observe_file_ingested

log = logging.getLogger(__name__)
PROCESSED = "processed"
REJECTED = "rejected"
ITEMS_PREFIX = "items"  # files named items*.csv / items*.parquet are catalog updates
# messages telling every API process to forget erased shoppers (keyed hashes, no events)
ERASE_PREFIX = "erase-"
DRAIN_BATCH_FILES = 200  # spooled event files per transaction when draining
SPOOLED_EVENTS_PREFIX = "events-"  # Inbox.write's event batches
SEQUENCE_FILE = ".sequence"  # the last stamp given out, and the lock that orders renames
_sequence = itertools.count()


def spool_name(prefix: str, stamp: int) -> str:
    return f"{prefix}{stamp:020d}-{os.getpid()}-{next(_sequence):06d}.parquet"


def position(name: str) -> str:
    """The part of a spooled file's name that orders it among all others (prefix dropped)."""
    return name.split("-", 1)[-1]


def stamp_of(position: str) -> int:
    try:
        return int(position.split("-", 1)[0])
    except ValueError:  # a file not named by ``Inbox.write``
        return 0


@dataclass
class Inbox:
    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, table: pa.Table, *, items: bool = False, prefix: str | None = None) -> Path:
        """Durably add one batch; returns its final path."""
        prefix = prefix or (f"{ITEMS_PREFIX}-" if items else SPOOLED_EVENTS_PREFIX)
        temporary = self.folder / f".{spool_name(prefix, time.time_ns())}.tmp"
        pq.write_table(table, temporary)
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        with self._next_stamp() as stamp:
            final = self.folder / spool_name(prefix, stamp)
            os.replace(temporary, final)
        fsync_directory(self.folder)
        return final

    @contextlib.contextmanager
    def _next_stamp(self) -> Iterator[int]:
        """A stamp above every one given out before, held until the caller's rename is done.

        Stamping at creation let a large batch, still being written, be overtaken by small ones
        stamped after it; a reader that had moved past those never looked back. The stamp is
        also at least the clock, so a counter lost in a crash cannot repeat an earlier one.
        """
        descriptor = os.open(self.folder / SEQUENCE_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                last = int(os.pread(descriptor, 32, 0).strip() or 0)
            except ValueError:
                last = 0
            stamp = max(time.time_ns(), last + 1)
            os.pwrite(descriptor, f"{stamp:020d}".encode(), 0)
            yield stamp
        finally:
            os.close(descriptor)  # releases the lock

    def ready_files(self, settle_seconds: float = 0.0) -> list[Path]:
        """Complete files waiting to be ingested, oldest name first.

        Files from other producers may still be growing: ``settle_seconds`` leaves alone any
        file modified more recently than that.
        """
        now = time.time()
        files = []
        for path in self.folder.iterdir():
            if not path.is_file() or path.name.startswith("."):
                continue
            if not path.name.lower().endswith(EVENT_SUFFIXES):
                continue
            if settle_seconds and now - path.stat().st_mtime < settle_seconds:
                continue
            files.append(path)
        return sorted(files, key=lambda p: p.name)

    def change_stamp(self) -> tuple[int, int]:
        """Modification times (ns) of the inbox and its processed folder: either moves whenever a
        spooled file is added, renamed or removed."""
        stamps = []
        for folder in (self.folder, self.folder / PROCESSED):
            try:
                stamps.append(folder.stat().st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return stamps[0], stamps[1]

    def files_after(self, cursor: str) -> list[Path]:
        """Spooled files (pending or processed) whose position sorts after ``cursor``."""
        found = []
        for folder in (self.folder, self.folder / PROCESSED):
            if folder.is_dir():
                found += [
                    p
                    for p in folder.glob("*.parquet")
                    if not p.name.startswith(".") and position(p.name) > cursor
                ]
        return sorted(found, key=lambda p: position(p.name))


@dataclass
class DrainReport:
    files: list[str] = field(default_factory=list)
    events_added: int = 0
    items_upserted: int = 0
    rejected: list[str] = field(default_factory=list)


def drain(
    store: Store, inbox: Inbox, *, settle_seconds: float = 0.0, keep_processed: float = 3600.0
) -> DrainReport:
    """Ingest every ready file of the inbox exactly once.

    Consecutive batches spooled by ``Inbox.write`` (small, already validated) go into the
    store together, up to ``DRAIN_BATCH_FILES`` in one transaction: a file's own transaction
    cost about 60 ms (the store's connection, the check against every stored event, the
    commit), so a busy API spooled faster than one file at a time could drain. A batch the
    store refuses is taken again file by file, so only the bad file is rejected. Any other
    file (items, a file dropped into a watched folder, however large) has a transaction of its
    own, as before."""
    report = DrainReport()
    processed = inbox.folder / PROCESSED
    processed.mkdir(exist_ok=True)
    events: list[Path] = []
    for path in inbox.ready_files(settle_seconds):
        if path.name.startswith(ERASE_PREFIX):  # a message for the replicas, nothing to store
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, processed / path.name)
            continue
        if not path.name.startswith(SPOOLED_EVENTS_PREFIX):  # items, or a file dropped in
            _drain_events(store, inbox, events, report)  # what came before it, first
            events = []
            items = path.name.lower().startswith(ITEMS_PREFIX)
            _drain_files(store, inbox, [path], report, items=items)
            continue
        events.append(path)
        if len(events) >= DRAIN_BATCH_FILES:
            _drain_events(store, inbox, events, report)
            events = []
    _drain_events(store, inbox, events, report)
    _forget_old(processed, keep_processed)
    return report


def _drain_events(store: Store, inbox: Inbox, files: list[Path], report: DrainReport) -> None:
    if not files:
        return
    if len(files) > 1 and not _drain_files(store, inbox, files, report, items=False):
        for path in files:  # one of them was refused, or taken by another drainer
            _drain_files(store, inbox, [path], report, items=False)
        return
    if len(files) == 1:
        _drain_files(store, inbox, files, report, items=False)


def _drain_files(
    store: Store, inbox: Inbox, files: list[Path], report: DrainReport, *, items: bool
) -> bool:
    """Ingest ``files`` in one transaction; False when a batch of several must be retried one
    by one (a single file is rejected, or skipped when another drainer took it)."""
    event_archive = None if items else get_settings().event_archive
    try:
        archived_up_to = archive.last_seq(store) if event_archive else 0
        last_writes = [path.stat().st_mtime for path in files]
        result = ingest(
            store,
            None if items else files,
            files[0] if items else None,
            show_progress=False,
            skip_ingested=True,
        )
    except DataValidationError as exc:
        if len(files) > 1:
            return False
        _reject(inbox, files[0], str(exc))
        report.rejected.append(files[0].name)
        FILES_REJECTED.inc()
        return True
    except FileNotFoundError:  # another drainer took one
        return len(files) == 1
    for n, last_write in enumerate(last_writes):  # the batch's events counted once
        observe_file_ingested(last_write, result.events_added if n == 0 else 0)
    if event_archive is not None and result.events_added:
        _archive(store, event_archive, archived_up_to)
    report.files += [path.name for path in files]
    report.events_added += result.events_added
    report.items_upserted += result.items_upserted
    processed = inbox.folder / PROCESSED
    for path in files:
        with contextlib.suppress(FileNotFoundError):  # another drainer moved it
            os.replace(path, processed / path.name)
    return True


def _archive(store: Store, event_archive: Path, archived_up_to: int) -> None:
    # The events are in the store already; a failed append must not make the file look
    # unprocessed (a second drain would skip it as ingested), so it is logged, not raised.
    try:
        archive.append_since(store, event_archive, archived_up_to)
    except Exception:
        log.exception("could not append the accepted events to the archive %s", event_archive)


def _reject(inbox: Inbox, path: Path, reason: str) -> None:
    rejected = inbox.folder / REJECTED
    rejected.mkdir(exist_ok=True)
    # the reason quotes offending values, shoppers' ids among them: it goes into the note beside
    # the file (which erasure rewrites), never into a log
    log.error("rejected %s; the reason is in %s/%s.error.txt", path.name, REJECTED, path.name)
    try:
        shutil.move(str(path), rejected / path.name)
        (rejected / f"{path.name}.error.txt").write_text(reason + "\n")
    except FileNotFoundError:
        pass


def _forget_old(folder: Path, older_than: float) -> None:
    cutoff = time.time() - older_than
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            continue


def watch(
    store: Store,
    inbox: Inbox,
    *,
    interval: float = 1.0,
    settle_seconds: float = 1.0,
    once: bool = False,
) -> None:
    """Drain the inbox now and then every ``interval`` seconds (until interrupted)."""
    while True:
        try:
            report = drain(store, inbox, settle_seconds=settle_seconds)
        except StoreBusyError as exc:  # the store was held too long: try again next round
            log.warning("%s", exc)
            report = DrainReport()
        if report.files or report.rejected:
            log.info(
                "ingested %d file(s): %d events, %d items; %d rejected",
                len(report.files), report.events_added, report.items_upserted,
                len(report.rejected),
            )  # fmt: skip
        if once:
            return
        time.sleep(interval)
