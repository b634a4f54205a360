"""Erasing one shopper everywhere the product keeps data, in steps that survive a crash.

An erasure first writes a journal (``erasures/<subject>.json`` beside the store) and then runs
its steps in order, recording each one as done:

1. ``announce``: an erase message (the hash, never the id) on the event bus, so every API
   process forgets the shopper's online state and serves them as unknown at once;
2. ``tombstone``: the keyed hash goes into the store's ``erased_subjects``; from then on any
   ingest (an old file again, a late inbox file) drops the shopper's rows;
3. ``store``: their events are deleted and the store file rebuilt, so no deleted row survives
   in free blocks;
4. ``files``: the inbox, its processed/ and rejected/ folders and the watched folder's are
   rewritten without their rows;
5. ``archive``: the Delta event archive (``EVENT_ARCHIVE``), when there is one, loses their
   rows (the files that held them are rewritten and the old ones vacuumed);
6. ``bus``: Redis stream entries holding their events are replaced by entries without them,
   and their keys in the shared online state (``ONLINE_STATE=redis``) are deleted;
7. ``model``: the served model forgets them (models/forgetting.py) and is published as a new
   version; older versions, which still hold them, are deleted.

The journal holds the raw id only while the erasure runs and is deleted when it ends; an
erasure interrupted (even by ``kill -9``) is finished by ``resume_pending``, which the API and
the worker call when they start. The audit log records the request and the outcome, by hash.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recsys_lite.config import Settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.ids import normalise_id
from recsys_lite.data.store import Store
from recsys_lite.data.subjects import load_key, subject_hash, subject_hash_sql
from recsys_lite.errors import ArtifactError, InvalidInputError
from recsys_lite.files import fsync_directory
from recsys_lite.models.artifact import (
    ARRAYS,
    ITEM_INDEX,
    MANIFEST,
    METRICS,
    USER_INDEX,
    load_artifact,
    save_artifact,
)
from recsys_lite.models.forgetting import forget_users
from recsys_lite.models.versions import list_versions, served_version, versions_folder
from recsys_lite.online.bus import create_bus
from recsys_lite.online.inbox import ERASE_PREFIX, PROCESSED, REJECTED, Inbox
from recsys_lite.privacy.files import scrub_folders

log = logging.getLogger(__name__)
JOURNALS = "erasures"
# the announcement first: every API process forgets the shopper within a bus poll, before the
# slower steps (and their waits for the store) run
STEPS = ("announce", "tombstone", "store", "files", "archive", "bus", "model")
_ARTIFACT_FILES = {ARRAYS, MANIFEST, METRICS, USER_INDEX, ITEM_INDEX}


@dataclass
class Erasure:
    user_id: str
    subject: str
    actor: str
    requested_at: float = field(default_factory=time.time)
    done: dict[str, Any] = field(default_factory=dict)  # step -> what it removed

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def announcement(subjects: list[str]) -> pa.Table:
    """The bus message telling every API process to forget these shoppers."""
    return pa.table({"subject": pa.array(subjects, pa.string())})


class Eraser:
    def __init__(self, settings: Settings, watch_dir: Path | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.db_path)
        self.key = load_key(settings.db_path)
        self.audit = AuditLog(audit_path(settings.db_path))
        self.journals = settings.db_path.parent / JOURNALS
        self.watch_dir = watch_dir or settings.watch_dir

    def subject(self, user_id: str) -> str:
        return subject_hash(self.key, user_id)

    # ----- the journal ---------------------------------------------------------------------

    def _journal(self, erasure: Erasure) -> Path:
        return self.journals / f"{erasure.subject}.json"

    def _record(self, erasure: Erasure) -> None:
        self.journals.mkdir(parents=True, exist_ok=True)
        path = self._journal(erasure)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(erasure.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_directory(self.journals)

    def pending(self) -> list[Erasure]:
        if not self.journals.is_dir():
            return []
        found = []
        for path in sorted(self.journals.glob("*.json")):
            try:
                found.append(Erasure(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                log.error("unreadable erasure journal %s", path.name)
        return found

    # ----- running ---------------------------------------------------------------------------

    def erase(self, user_id: str, actor: str) -> Erasure:
        try:
            user_id = normalise_id(user_id)
        except ValueError as exc:
            raise InvalidInputError(f"user_id: {exc}") from None
        erasure = Erasure(user_id, self.subject(user_id), actor)
        self._record(erasure)
        self.audit.append("erase.requested", actor=actor, subject=erasure.subject)
        return self._run(erasure)

    def resume_pending(self) -> list[Erasure]:
        """Finish erasures a crash interrupted."""
        finished = []
        for erasure in self.pending():
            log.warning("finishing an interrupted erasure (%s)", erasure.subject[:12])
            finished.append(self._run(erasure))
        return finished

    def _run(self, erasure: Erasure) -> Erasure:
        steps = {
            "tombstone": self._tombstone,
            "announce": self._announce,
            "store": self._store,
            "files": self._files,
            "archive": self._archive,
            "bus": self._bus,
            "model": self._model,
        }
        started = time.perf_counter()
        for name in STEPS:
            if name in erasure.done:
                continue
            erasure.done[name] = steps[name](erasure)
            self._record(erasure)
        erasure.done["seconds"] = round(time.perf_counter() - started, 3)
        retrain_by = erasure.requested_at + self.settings.erasure_retrain_hours * 3600
        self.audit.append(
            "erase.completed", actor=erasure.actor, subject=erasure.subject,
            details={**{k: v for k, v in erasure.done.items() if k != "seconds"},
                     "full_retrain_due_by": time.strftime(
                         "%Y-%m-%dT%H:%M:%SZ", time.gmtime(retrain_by))},
        )  # fmt: skip
        self._journal(erasure).unlink(missing_ok=True)
        return erasure

    # ----- the steps -------------------------------------------------------------------------

    def _tombstone(self, erasure: Erasure) -> dict[str, Any]:
        with self.store.connect() as con:
            con.execute(
                "INSERT OR IGNORE INTO erased_subjects VALUES (?, ?)",
                [erasure.subject, int(erasure.requested_at)],
            )
        return {}

    def _announce(self, erasure: Erasure) -> dict[str, Any]:
        inbox = Inbox(self.settings.inbox)
        message = announcement([erasure.subject])
        batch = inbox.write(message, prefix=ERASE_PREFIX).name
        if self.settings.event_bus != "embedded":  # the inbox file is the embedded bus
            bus = create_bus(self.settings, inbox)
            try:
                bus.publish(batch, message)
            finally:
                bus.close()
        return {"message": batch}

    def _store(self, erasure: Erasure) -> dict[str, Any]:
        hashed = subject_hash_sql(self.key, "user_id")
        with self.store.connect() as con:
            (count,) = con.execute(
                f"SELECT count(*) FROM events WHERE {hashed} = ?", [erasure.subject]
            ).fetchone() or (0,)
            con.execute(f"DELETE FROM events WHERE {hashed} = ?", [erasure.subject])
        self.store.rebuild()
        return {"events_deleted": int(count)}

    def _files(self, erasure: Erasure) -> dict[str, Any]:
        inbox = self.settings.inbox
        folders = [inbox, inbox / PROCESSED, inbox / REJECTED]
        if self.watch_dir is not None:
            folders += [self.watch_dir / PROCESSED, self.watch_dir / REJECTED]
        return scrub_folders(folders, self.key, erasure.subject, erasure.user_id)

    def _archive(self, erasure: Erasure) -> dict[str, Any]:
        if self.settings.event_archive is None:
            return {}
        from recsys_lite.data.archive import scrub_archive

        return {"archive_rows_removed": scrub_archive(
            self.settings.event_archive, self.key, erasure.subject
        )}  # fmt: skip

    def _bus(self, erasure: Erasure) -> dict[str, Any]:
        from recsys_lite.privacy.redis_streams import forget_online_state, scrub_stream

        done: dict[str, Any] = {}
        if self.settings.event_bus == "redis":
            done |= scrub_stream(self.settings, self.key, erasure.subject)
        if self.settings.shared_online_state:
            done |= forget_online_state(self.settings, erasure.subject)
        return done

    def _model(self, erasure: Erasure) -> dict[str, Any]:
        result = self._forget_in_artifact(self.settings.model_dir, erasure)
        # an experiment's variants are served artifacts too
        variants = self._variant_artifacts()
        if variants:
            result["variants"] = {
                name: self._forget_in_artifact(path, erasure) for name, path in variants.items()
            }
        return result

    def _variant_artifacts(self) -> dict[str, Path]:
        if self.settings.experiment_file is None:
            return {}
        from recsys_lite.experiments.design import load_experiment

        experiment = load_experiment(Path(self.settings.experiment_file))
        return {v.name: v.artifact for v in experiment.variants if v.artifact is not None}

    def _forget_in_artifact(self, served: Path, erasure: Erasure) -> dict[str, Any]:
        try:
            artifact = load_artifact(served, self.settings)
        except ArtifactError:
            return {"model": "none served"}
        model = artifact.model
        ids = model.user_map.ids
        hashes = np.array([subject_hash(self.key, str(user)) for user in ids.tolist()])
        users = np.flatnonzero(hashes == erasure.subject)
        result: dict[str, Any] = {"model": model.name, "user_rows_removed": len(users)}
        if len(users):
            forget_users(model, users, relearn=True)
            # the kind chosen again, and HNSW calibrated again: the fewer shoppers may move both
            built = artifact.manifest.get("indexes", {}).get(USER_INDEX, "auto")
            model.build_indexes("ivf" if built == "ivf" else "auto", self.settings)
            kept = {
                key: value for key, value in artifact.manifest.items()
                if key not in {"format_version", "model_type", "params", "created_at", "version",
                               "libraries", "n_users", "n_items", "indexes",
                               "index_calibration", "checksums"}
            }  # fmt: skip
            extra_files = {
                p.name: p.read_bytes() for p in artifact.path.iterdir()
                if p.is_file() and p.name not in _ARTIFACT_FILES
            }  # fmt: skip
            save_artifact(
                model, served, metrics=artifact.metrics,
                extra={**kept, "forgotten_users": kept.get("forgotten_users", 0) + len(users)},
                extra_files=extra_files,
            )  # fmt: skip
            result["version"] = served_version(served)
        result["versions_deleted"] = self._delete_older_versions(served)
        return result

    @staticmethod
    def _delete_older_versions(served: Path) -> int:
        """Every version but the served one held the shopper: rollback starts from here."""
        current = served_version(served)
        deleted = 0
        for version in list_versions(served):
            if version != current:
                shutil.rmtree(versions_folder(served) / version, ignore_errors=True)
                deleted += 1
        return deleted
