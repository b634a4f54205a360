"""Validated, atomic ingestion of event logs and item catalogs into the store.

Every file is staged inside DuckDB (never as Python rows), checked with SQL, and only when every
file passes are the rows written, in one transaction. Events are a set: a row identical to one
already stored (same user, item, time, quantity and type) is the same event and is skipped, so
ingesting a file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from recsys_lite.config import get_settings
from recsys_lite.data.store import ITEM_FIELDS, Store, run_with_progress
from recsys_lite.data.subjects import load_key, subject_hash_sql
from recsys_lite.data.validation import (
    ITEM_CHECKS,
    NORMALIZED_ITEM_COLUMNS,
    OPTIONAL_EVENT_COLUMNS,
    SET_FIELDS,
    Check,
    Problem,
    duplicate_item_problems,
    event_checks,
    find_problems,
    normalized_events_sql,
)
from recsys_lite.errors import DataValidationError
from recsys_lite.files import file_sha256

EVENT_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".ndjson", ".json", ".jsonl.gz")
ITEM_SUFFIXES = (".parquet", ".csv", ".csv.gz")
ARRIVAL_FILE_STRIDE = 2**40  # arrival numbers of one ingest: file index * this + row


@dataclass
class IngestReport:
    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # ingested before (same content)
    events_read: int = 0
    events_distinct: int = 0  # events_read less the rows that repeat one of the same input
    events_added: int = 0
    items_upserted: int = 0

    @property
    def duplicates_in_input(self) -> int:
        """Rows identical to an earlier row of the same command's files."""
        return self.events_read - self.events_distinct

    @property
    def already_stored(self) -> int:
        """Distinct events of the input that the store held before."""
        return self.events_distinct - self.events_added

    @property
    def duplicates_skipped(self) -> int:
        return self.events_read - self.events_added


def discover_files(path: Path, suffixes: tuple[str, ...], kind: str) -> list[Path]:
    """A file, or the files of a folder with a supported suffix, in name order."""
    if not path.exists():
        raise DataValidationError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _has_suffix(p, suffixes))
        if not files:
            raise DataValidationError(
                f"{path}: folder holds no {kind} files ({', '.join(suffixes)})"
            )
        return files
    if not _has_suffix(path, suffixes):
        raise DataValidationError(
            f"{path}: unsupported {kind} file type (expected {', '.join(suffixes)})"
        )
    return [path]


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    return path.name.lower().endswith(suffixes)


def _reader_sql(path: Path) -> str:
    literal = "'" + str(path).replace("'", "''") + "'"
    name = path.name.lower()
    if name.endswith(".parquet"):
        return f"read_parquet({literal})"
    if name.endswith((".csv", ".csv.gz")):
        return f"read_csv({literal}, all_varchar = true, header = true)"
    return f"read_json({literal}, format = 'newline_delimited')"


def _stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    show_progress: bool,
) -> list[str]:
    """Copy one file into a VARCHAR staging table with a 1-based ``row`` column.

    Returns the canonical optional columns the file lacks. Raises on unreadable files or
    missing required columns.
    """
    raw = f"{table}_raw"

    def load() -> None:
        con.execute(f"CREATE TEMP TABLE {raw} AS SELECT * FROM {_reader_sql(path)}")

    try:
        run_with_progress(con, load, f"reading {path.name}", show=show_progress)
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise DataValidationError(f"{path}: cannot be read: {first_line}") from exc

    return _shape_staging(con, raw, table, str(path), required, optional)


def _shape_staging(
    con: duckdb.DuckDBPyConnection,
    raw: str,
    table: str,
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
) -> list[str]:
    """Raw loaded rows → the canonical VARCHAR columns plus a 1-based ``row`` number."""
    present = {
        str(r[0]).strip().lower(): str(r[0]) for r in con.execute(f"DESCRIBE {raw}").fetchall()
    }
    missing = [c for c in required if c not in present]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {', '.join(missing)}"
            f" (found: {', '.join(sorted(present.values())) or 'none'})",
            details=[{"file": source, "column": c, "reason": "missing column"} for c in missing],
        )
    selects = ["rowid + 1 AS row"]
    if SET_FIELDS in present and SET_FIELDS not in required + optional:
        selects.append(f'"{present[SET_FIELDS]}" AS {SET_FIELDS}')
    absent = []
    for column in (*required, *optional):
        if column in present:
            quoted = '"' + present[column].replace('"', '""') + '"'
            selects.append(f"CAST({quoted} AS VARCHAR) AS {column}")
        else:
            absent.append(column)
            selects.append(f"CAST(NULL AS VARCHAR) AS {column}")
    con.execute(f"CREATE TEMP TABLE {table} AS SELECT {', '.join(selects)} FROM {raw}")
    con.execute(f"DROP TABLE {raw}")
    return absent


def ingest(
    store: Store,
    events: Path | Sequence[Path] | None = None,
    items: Path | None = None,
    *,
    show_progress: bool = True,
    skip_ingested: bool = False,
    max_clock_skew: int | None = None,
) -> IngestReport:
    """Validate every input file, then write all of them in one transaction or none at all.

    ``events``: a file, a folder, or several of them (in that order). Each file's content hash
    is recorded in the same transaction. With ``skip_ingested``, files whose content was
    ingested before are skipped without being read (the watcher).
    """
    if events is None and items is None:
        raise DataValidationError("nothing to ingest: give events, items or both")
    given = [] if events is None else [events] if isinstance(events, Path) else list(events)
    event_files = [f for path in given for f in discover_files(path, EVENT_SUFFIXES, "event")]
    item_files = discover_files(items, ITEM_SUFFIXES, "item") if items else []
    report = IngestReport()
    hashes = {path: file_sha256(path) for path in (*event_files, *item_files)}

    with store.connect() as con:
        if skip_ingested:
            known = _known_hashes(con, list(hashes.values()))
            report.skipped_files = [str(p) for p, h in hashes.items() if h in known]
            event_files = [p for p in event_files if hashes[p] not in known]
            item_files = [p for p in item_files if hashes[p] not in known]
        report.files = [str(p) for p in (*event_files, *item_files)]
        if not report.files:
            return report
        # Staging happens outside the transaction: temp tables are private to this connection,
        # and rowids (our row numbers) are only dense for committed rows.
        skew = get_settings().max_clock_skew if max_clock_skew is None else max_clock_skew
        event_tables, item_tables = _stage_and_validate(
            con, event_files, item_files, show_progress, event_checks(skew)
        )
        con.execute("BEGIN TRANSACTION")
        try:
            _write(con, event_tables, item_tables, report, show_progress, store.path)
            tables = [*event_tables, *(table for table, _ in item_tables)]
            staged = zip([*event_files, *item_files], tables, strict=True)
            for path, table in staged:
                con.execute(
                    "INSERT OR IGNORE INTO ingested_files (sha256, name, rows)"
                    f" SELECT ?, ?, count(*) FROM {table}",
                    [hashes[path], path.name],
                )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return report


def _stage_and_validate(
    con: duckdb.DuckDBPyConnection,
    event_files: list[Path],
    item_files: list[Path],
    show_progress: bool,
    checks: tuple[Check, ...],
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    problems: list[Problem] = []
    event_tables = []
    for n, path in enumerate(event_files):
        table = f"stage_events_{n}"
        absent = _stage_file(
            con, path, table, ("user_id", "item_id", "ts"), OPTIONAL_EVENT_COLUMNS, show_progress
        )
        if "qty" in absent:  # a log without quantities counts each event once
            con.execute(f"UPDATE {table} SET qty = '1'")
        problems += find_problems(con, table, str(path), checks)
        event_tables.append(table)
    item_tables = []
    for n, path in enumerate(item_files):
        table = f"stage_items_{n}"
        absent = _stage_file(con, path, table, ("item_id",), ITEM_FIELDS, show_progress)
        problems += find_problems(con, table, str(path), ITEM_CHECKS)
        problems += duplicate_item_problems(con, table, str(path))
        item_tables.append((table, absent))
    if problems:
        raise DataValidationError(
            "\n".join(p.line() for p in problems), details=[p.detail() for p in problems]
        )
    return event_tables, item_tables


def _write(
    con: duckdb.DuckDBPyConnection,
    event_tables: list[str],
    item_tables: list[tuple[str, list[str]]],
    report: IngestReport,
    show_progress: bool,
    db_path: Path,
) -> None:
    if event_tables:
        # each row's place in the command's input: file by file, row by row
        union = " UNION ALL ".join(
            normalized_events_sql(table, arrival_from=n * ARRIVAL_FILE_STRIDE)
            for n, table in enumerate(event_tables)
        )
        con.execute(f"CREATE TEMP TABLE staged_events AS {union}")
        _drop_erased_subjects(con, db_path)
        (report.events_read, report.events_distinct) = con.execute(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT user_id, item_id, ts, qty,"
            " event_type FROM staged_events)) FROM staged_events"
        ).fetchone() or (0, 0)

        def insert() -> int:
            before = _count(con, "events")
            # a repeated event keeps its first arrival; new events are numbered after every
            # stored one, in arrival order
            con.execute(
                "INSERT INTO events (user_id, item_id, ts, qty, event_type, seq,"
                " recommendation_id, position)"
                " SELECT user_id, item_id, ts, qty, event_type,"
                " (SELECT coalesce(max(seq), 0) FROM events)"
                " + row_number() OVER (ORDER BY arrival), recommendation_id, position"
                " FROM (SELECT user_id, item_id, ts, qty, event_type, min(arrival) AS arrival,"
                " arg_min(recommendation_id, arrival) AS recommendation_id,"
                " arg_min(position, arrival) AS position"
                " FROM staged_events GROUP BY user_id, item_id, ts, qty, event_type) s"
                " WHERE NOT EXISTS ("
                " SELECT 1 FROM events e WHERE e.user_id = s.user_id AND e.item_id = s.item_id"
                " AND e.ts = s.ts AND e.qty = s.qty AND e.event_type = s.event_type)"
            )
            return _count(con, "events") - before

        report.events_added = run_with_progress(con, insert, "writing events", show=show_progress)
    for table, absent in item_tables:
        con.execute(_merge_items_sql(table, con, absent))
        report.items_upserted += _count(con, table)


def _drop_erased_subjects(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Erased shoppers stay erased: rows from before their erasure, in any input (an old file
    again, a late inbox file), are dropped before writing. Later rows are a returning shopper's
    new history."""
    (erased,) = con.execute("SELECT count(*) FROM erased_subjects").fetchone() or (0,)
    if erased:
        hashed = subject_hash_sql(load_key(db_path), "s.user_id")
        con.execute(
            "DELETE FROM staged_events s WHERE EXISTS (SELECT 1 FROM erased_subjects e"
            f" WHERE e.subject = {hashed} AND s.ts <= e.erased_at)"
        )


def _merge_items_sql(table: str, con: duckdb.DuckDBPyConnection, absent: list[str]) -> str:
    """Upsert staged catalog rows: the fields a row sets replace the stored ones, the others
    stay (a new item has nulls there)."""
    columns = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    if SET_FIELDS in columns:
        sets = SET_FIELDS
    else:  # a file sets the columns it has
        given = [f"'{name}'" for name in ITEM_FIELDS if name not in absent]
        sets = f"[{', '.join(given)}]::VARCHAR[]"
    merged = ", ".join(
        f"CASE WHEN list_contains(s.{SET_FIELDS}, '{name}') THEN s.{name} ELSE i.{name} END"
        f" AS {name}"
        for name in ITEM_FIELDS
    )
    return (
        f"INSERT OR REPLACE INTO items SELECT s.item_id, {merged} FROM"
        f" (SELECT {NORMALIZED_ITEM_COLUMNS}, {sets} AS {SET_FIELDS} FROM {table}) s"
        f" LEFT JOIN items i ON i.item_id = s.item_id"
    )


def _known_hashes(con: duckdb.DuckDBPyConnection, hashes: list[str]) -> set[str]:
    if not hashes:
        return set()
    rows = con.execute(
        "SELECT sha256 FROM ingested_files WHERE sha256 IN (SELECT unnest(?))", [hashes]
    ).fetchall()
    return {r[0] for r in rows}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0
