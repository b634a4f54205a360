"""``recsys-lite gdpr``: export, erase and check one shopper; verify the audit trail."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_lite.cli_console import console, fail, out
from recsys_lite.cli_options import DbOption, ModelDirOption
from recsys_lite.config import Settings, get_settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.store import Store
from recsys_lite.errors import RecsysError
from recsys_lite.models.artifact import load_artifact, read_manifest
from recsys_lite.models.versions import list_versions, served_version
from recsys_lite.privacy.erase import Eraser
from recsys_lite.privacy.export import export_user
from recsys_lite.privacy.retention import apply_retention

gdpr_app = typer.Typer(
    help="Shoppers' rights: export or erase one shopper, check an erasure, verify the audit.",
    no_args_is_help=True,
)

UserOption = Annotated[str, typer.Option("--user-id", help="the shopper's id")]


def _settings(db: Path | None, model_dir: Path | None) -> Settings:
    base = get_settings()
    return base.model_copy(
        update={"db_path": db or base.db_path, "model_dir": model_dir or base.model_dir}
    )


@gdpr_app.command("export-user")
def export_command(
    user_id: UserOption,
    output: Annotated[Path, typer.Option("--output", help="the JSON file to write")],
    db: DbOption = None,
    model_dir: ModelDirOption = None,
) -> None:
    """Everything held about one shopper, as one JSON document."""
    try:
        document = export_user(_settings(db, model_dir), user_id, actor="cli")
    except RecsysError as exc:
        fail(exc)
        return
    output.write_text(json.dumps(document, indent=2, default=str))
    console.print(f"wrote {output}: {document['profile']['events']} events")


@gdpr_app.command("delete-user")
def delete_command(
    user_id: UserOption,
    db: DbOption = None,
    model_dir: ModelDirOption = None,
    watch_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--watch-dir", help="the stream-ingest folder (default: $WATCH_DIR)"),
    ] = None,
) -> None:
    """Erase one shopper everywhere; running API processes forget them through the bus."""
    try:
        erasure = Eraser(_settings(db, model_dir), watch_dir).erase(user_id, actor="cli")
    except RecsysError as exc:
        fail(exc)
        return
    out.print_json(data={"subject": erasure.subject, "steps": erasure.done})


@gdpr_app.command("status")
def status_command(
    user_id: UserOption, db: DbOption = None, model_dir: ModelDirOption = None
) -> None:
    """Which stores and artifacts are clean of one shopper, and which retrain is still due."""
    settings = _settings(db, model_dir)
    try:
        report = erasure_status(settings, user_id)
    except RecsysError as exc:
        fail(exc)
        return
    out.print_json(data=report)


def erasure_status(settings: Settings, user_id: str) -> dict[str, Any]:
    eraser = Eraser(settings)
    subject = eraser.subject(user_id)
    with Store(settings.db_path).connect(read_only=True) as con:
        (events,) = con.execute(
            "SELECT count(*) FROM events WHERE user_id = ?", [user_id]
        ).fetchone() or (0,)
        erased = con.execute(
            "SELECT erased_at FROM erased_subjects WHERE subject = ?", [subject]
        ).fetchone()
    report: dict[str, Any] = {
        "subject": subject,
        "erased": erased is not None,
        "store_events": int(events),
        "erasure_pending": any(e.subject == subject for e in eraser.pending()),
    }
    try:
        manifest = read_manifest(settings.model_dir)
        model = load_artifact(settings.model_dir, settings).model
        report["served_model_knows_user"] = user_id in model.user_map
        report["older_versions_kept"] = len(list_versions(settings.model_dir)) - (
            1 if served_version(settings.model_dir) else 0
        )
    except RecsysError:
        manifest = {}
        report["served_model_knows_user"] = None
    if erased is not None:
        due = erased[0] + settings.erasure_retrain_hours * 3600
        created = manifest.get("created_at")
        retrained = (
            created is not None
            and "forgotten_users" not in manifest
            and calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) > erased[0]
        )
        report["full_retrain"] = {
            "done": bool(retrained),
            "due_by": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(due)),
            "overdue": not retrained and time.time() > due,
        }
    return report


@gdpr_app.command("retention")
def retention_command(
    days: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--days", help="keep this many days (default: $EVENT_RETENTION_DAYS)"),
    ] = None,
    db: DbOption = None,
) -> None:
    """Delete events older than the retention period now (the worker does it every cycle)."""
    settings = _settings(db, None)
    chosen = days or settings.event_retention_days
    if chosen is None:
        console.print("[bold red]error:[/] give --days or set EVENT_RETENTION_DAYS")
        raise typer.Exit(code=2)
    out.print_json(data=apply_retention(settings, chosen, actor="cli"))


@gdpr_app.command("verify-audit")
def verify_command(db: DbOption = None) -> None:
    """Check the audit trail's hash chain and print its head (record it elsewhere)."""
    path = audit_path(db or get_settings().db_path)
    result = AuditLog(path).verify()
    if result.ok:
        out.print(f"audit trail intact: {result.entries} entries; head {result.head}")
        return
    console.print(
        f"[bold red]audit trail broken[/] after {result.entries} good entries: {result.problem}"
    )
    raise typer.Exit(code=1)
