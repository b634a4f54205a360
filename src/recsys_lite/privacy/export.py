"""Everything the shop holds about one shopper, as one JSON document (an access request).

Sections: ``events`` (every stored event, with attribution), ``profile`` (what is derived
from them: totals by type, first and last event, distinct items), ``model`` (whether the served
model holds a vector and a stored history for them), ``online`` (events since training held by
the API process that answered, when exported through the API), ``erasure`` (whether they were
erased, by keyed hash), ``audit`` (the audit entries about them), and ``not_kept`` (data the
product could hold but does not: experiment assignments and cached answers).
"""

from __future__ import annotations

import time
from typing import Any

from recsys_lite.config import Settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.ids import normalise_id
from recsys_lite.data.store import Store
from recsys_lite.data.subjects import load_key, subject_hash
from recsys_lite.errors import ArtifactError, InvalidInputError
from recsys_lite.models.artifact import load_artifact
from recsys_lite.models.base import Recommender

FORMAT = "recsys-lite.user-export/1"


def export_user(
    settings: Settings,
    user_id: str,
    *,
    actor: str,
    model: Recommender | None = None,
    online_events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    try:
        user_id = normalise_id(user_id)
    except ValueError as exc:
        raise InvalidInputError(f"user_id: {exc}") from None
    key = load_key(settings.db_path)
    subject = subject_hash(key, user_id)
    with Store(settings.db_path).connect(read_only=True) as con:
        events = con.execute(
            "SELECT item_id, ts, qty, event_type, recommendation_id, position FROM events"
            " WHERE user_id = ? ORDER BY ts, seq",
            [user_id],
        ).fetchall()
        erased = con.execute(
            "SELECT erased_at FROM erased_subjects WHERE subject = ?", [subject]
        ).fetchone()
    columns = ("item_id", "ts", "qty", "event_type", "recommendation_id", "position")
    rows = [dict(zip(columns, row, strict=True)) for row in events]
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["event_type"]] = totals.get(row["event_type"], 0) + 1
    if model is None:
        try:
            model = load_artifact(settings.model_dir, settings).model
        except ArtifactError:
            model = None
    audit = AuditLog(audit_path(settings.db_path))
    document = {
        "format": FORMAT,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user_id": user_id,
        "events": rows,
        "profile": {
            "events": len(rows),
            "by_type": totals,
            "first_event_ts": rows[0]["ts"] if rows else None,
            "last_event_ts": rows[-1]["ts"] if rows else None,
            "distinct_items": len({row["item_id"] for row in rows}),
        },
        "model": _model_section(model, user_id),
        "online": (
            {"events_since_training": online_events}
            if online_events is not None
            else "not read: only an API process holds its online state (export through the API)"
        ),
        "erasure": {"erased": erased is not None, "erased_at": erased[0] if erased else None},
        "audit": audit.about(subject),
        "not_kept": {
            "experiment_assignments": _assignment(settings, user_id),
            "cached_answers": "none: answers are not cached per shopper",
        },
    }
    audit.append("export", actor=actor, subject=subject, details={"events": len(rows)})
    return document


def _assignment(settings: Settings, user_id: str) -> str | dict[str, str]:
    """Computed from the user id and the experiment's salt: no assignment is stored."""
    if settings.experiment_file is None:
        return "none: no experiment is running"
    from recsys_lite.experiments.design import load_experiment

    experiment = load_experiment(settings.experiment_file)
    return {
        "experiment": experiment.name,
        "variant": experiment.assign(user_id),
        "stored": "nothing: computed from a salted hash of the user id on each request",
    }


def _model_section(model: Recommender | None, user_id: str) -> dict[str, Any]:
    if model is None:
        return {"served": None}
    index = model.user_map.get(user_id)
    section: dict[str, Any] = {"served": model.name, "knows_user": index is not None}
    if index is not None:
        import numpy as np

        vectors = model.user_vectors(np.array([index]))
        section["has_user_vector"] = vectors is not None
        section["stored_history_length"] = len(model.history(index))
    return section
