"""Validated, atomic ingestion of event logs and item catalogs into the store.

Every file is staged inside DuckDB (never as Python rows), checked with SQL, and only when every
file passes are the rows written, in one transaction. Events are a set: a row identical to one
already stored (same user, item, time, quantity and type) is the same event and is skipped, so
ingesting a file twice changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.store import ITEM_FIELDS, Store, run_with_progress
from recsys_lite.errors import DataValidationError
from recsys_lite.files import file_sha256

EVENT_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".jsonl", ".ndjson", ".json", ".jsonl.gz")
ITEM_SUFFIXES = (".parquet", ".csv", ".csv.gz")
DEFAULT_EVENT_TYPE = "purchase"
MAX_ROWS_SHOWN = 5
ARRIVAL_FILE_STRIDE = 2**40  # arrival numbers of one ingest: file index * this + row

# Numbers above these magnitudes are milliseconds / microseconds since the epoch, not seconds
# (1e11 seconds is the year 5138; 1e11 ms is 1973).
_TS_SQL = """
    CASE
        WHEN TRY_CAST(ts AS DOUBLE) IS NOT NULL THEN TRY_CAST(floor(
            CASE
                WHEN abs(TRY_CAST(ts AS DOUBLE)) >= 1e14 THEN TRY_CAST(ts AS DOUBLE) / 1e6
                WHEN abs(TRY_CAST(ts AS DOUBLE)) >= 1e11 THEN TRY_CAST(ts AS DOUBLE) / 1e3
                ELSE TRY_CAST(ts AS DOUBLE)
            END) AS BIGINT)
        ELSE TRY_CAST(floor(epoch(TRY_CAST(ts AS TIMESTAMPTZ))) AS BIGINT)
    END
"""


@dataclass(frozen=True)
class Check:
    column: str
    failing: str  # SQL condition true for bad rows
    reason: str


EVENT_CHECKS = (
    Check("user_id", "user_id IS NULL OR trim(user_id) = ''", "empty id"),
    Check("item_id", "item_id IS NULL OR trim(item_id) = ''", "empty id"),
    Check("ts", "ts IS NULL OR trim(ts) = ''", "missing timestamp"),
    Check("ts", f"trim(ts) <> '' AND ({_TS_SQL}) IS NULL", "unparseable timestamp"),
    Check("qty", "qty IS NULL OR trim(qty) = ''", "missing quantity"),
    Check(
        "qty",
        "trim(qty) <> '' AND (TRY_CAST(qty AS DOUBLE) IS NULL"
        " OR TRY_CAST(qty AS DOUBLE) <> floor(TRY_CAST(qty AS DOUBLE))"
        " OR abs(TRY_CAST(qty AS DOUBLE)) > 2147483647)",
        "not an integer",
    ),
    Check("qty", "TRY_CAST(qty AS DOUBLE) < 0", "negative quantity"),
)

ITEM_CHECKS = (
    Check("item_id", "item_id IS NULL OR trim(item_id) = ''", "empty id"),
    Check(
        "price",
        "price IS NOT NULL AND trim(price) <> '' AND TRY_CAST(price AS DOUBLE) IS NULL",
        "not a number",
    ),
    Check("price", "TRY_CAST(price AS DOUBLE) < 0", "negative price"),
)


_NORMALIZED_ITEM_COLUMNS = (
    "trim(item_id) AS item_id, nullif(trim(category), '') AS category,"
    " nullif(trim(brand), '') AS brand, TRY_CAST(price AS DOUBLE) AS price,"
    " nullif(trim(img_url), '') AS img_url, nullif(trim(title), '') AS title,"
    " nullif(trim(description), '') AS description"
)


@dataclass
class IngestReport:
    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # ingested before (same content)
    events_read: int = 0
    events_added: int = 0
    items_upserted: int = 0

    @property
    def duplicates_skipped(self) -> int:
        return self.events_read - self.events_added


@dataclass
class _Problem:
    file: str
    column: str
    reason: str
    rows: list[int]
    values: list[Any]
    total: int

    def line(self) -> str:
        rows = ", ".join(str(r) for r in self.rows)
        more = f" and {self.total - len(self.rows)} more" if self.total > len(self.rows) else ""
        noun = "row" if self.total == 1 else "rows"
        shown = [v for v in self.values if v not in (None, "")]
        values = f" {', '.join(repr(v) for v in shown)}" if shown else ""
        return f"{self.file}: {noun} {rows}{more}, column {self.column}: {self.reason}{values}"

    def detail(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "column": self.column,
            "reason": self.reason,
            "rows": self.rows,
            "values": self.values,
            "count": self.total,
        }


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


def _find_problems(
    con: duckdb.DuckDBPyConnection, table: str, file: str, checks: tuple[Check, ...]
) -> list[_Problem]:
    """Every check in one scan of the staged rows."""
    aggregates = []
    for check in checks:
        condition = f"coalesce(({check.failing}), false)"
        aggregates += [
            f"count(*) FILTER (WHERE {condition})",
            f"(list(row ORDER BY row) FILTER (WHERE {condition}))[1:{MAX_ROWS_SHOWN}]",
            f"(list({check.column} ORDER BY row) FILTER (WHERE {condition}))[1:{MAX_ROWS_SHOWN}]",
        ]
    (found,) = con.execute(f"SELECT {', '.join(aggregates)} FROM {table}").fetchall()
    problems = []
    for n, check in enumerate(checks):
        count, rows, values = found[3 * n : 3 * n + 3]
        if count:
            problems.append(_Problem(file, check.column, check.reason, rows, values, count))
    return problems


def _duplicate_item_problems(
    con: duckdb.DuckDBPyConnection, table: str, file: str
) -> list[_Problem]:
    rows = con.execute(
        f"SELECT trim(item_id), list(row ORDER BY row) FROM {table}"
        f" WHERE trim(item_id) <> '' GROUP BY trim(item_id) HAVING count(*) > 1"
        f" ORDER BY min(row) LIMIT {MAX_ROWS_SHOWN}"
    ).fetchall()
    return [
        _Problem(
            file, "item_id", "duplicate id", dup_rows[:MAX_ROWS_SHOWN], [item_id], len(dup_rows)
        )
        for item_id, dup_rows in rows
    ]


def ingest(
    store: Store,
    events: Path | None = None,
    items: Path | None = None,
    *,
    show_progress: bool = True,
    skip_ingested: bool = False,
) -> IngestReport:
    """Validate every input file, then write all of them in one transaction or none at all.

    Each file's content hash is recorded in the same transaction. With ``skip_ingested``,
    files whose content was ingested before are skipped without being read (the watcher).
    """
    if events is None and items is None:
        raise DataValidationError("nothing to ingest: give events, items or both")
    event_files = discover_files(events, EVENT_SUFFIXES, "event") if events else []
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
        event_tables, item_tables = _stage_and_validate(con, event_files, item_files, show_progress)
        con.execute("BEGIN TRANSACTION")
        try:
            _write(con, event_tables, item_tables, report, show_progress)
            staged = zip([*event_files, *item_files], [*event_tables, *item_tables], strict=True)
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
) -> tuple[list[str], list[str]]:
    problems: list[_Problem] = []
    event_tables = []
    for n, path in enumerate(event_files):
        table = f"stage_events_{n}"
        absent = _stage_file(
            con, path, table, ("user_id", "item_id", "ts"), ("qty", "event_type"), show_progress
        )
        if "qty" in absent:  # a log without quantities counts each event once
            con.execute(f"UPDATE {table} SET qty = '1'")
        problems += _find_problems(con, table, str(path), EVENT_CHECKS)
        event_tables.append(table)
    item_tables = []
    for n, path in enumerate(item_files):
        table = f"stage_items_{n}"
        _stage_file(con, path, table, ("item_id",), ITEM_FIELDS, show_progress)
        problems += _find_problems(con, table, str(path), ITEM_CHECKS)
        problems += _duplicate_item_problems(con, table, str(path))
        item_tables.append(table)
    if problems:
        raise DataValidationError(
            "\n".join(p.line() for p in problems), details=[p.detail() for p in problems]
        )
    return event_tables, item_tables


def _write(
    con: duckdb.DuckDBPyConnection,
    event_tables: list[str],
    item_tables: list[str],
    report: IngestReport,
    show_progress: bool,
) -> None:
    if event_tables:
        # each row's place in the command's input: file by file, row by row
        union = " UNION ALL ".join(
            _normalized_events_sql(table, arrival_from=n * ARRIVAL_FILE_STRIDE)
            for n, table in enumerate(event_tables)
        )
        con.execute(f"CREATE TEMP TABLE staged_events AS {union}")
        (report.events_read,) = con.execute("SELECT count(*) FROM staged_events").fetchone() or (0,)

        def insert() -> int:
            before = _count(con, "events")
            # a repeated event keeps its first arrival; new events are numbered after every
            # stored one, in arrival order
            con.execute(
                "INSERT INTO events (user_id, item_id, ts, qty, event_type, seq)"
                " SELECT user_id, item_id, ts, qty, event_type,"
                " (SELECT coalesce(max(seq), 0) FROM events)"
                " + row_number() OVER (ORDER BY arrival)"
                " FROM (SELECT user_id, item_id, ts, qty, event_type, min(arrival) AS arrival"
                " FROM staged_events GROUP BY ALL) s WHERE NOT EXISTS ("
                " SELECT 1 FROM events e WHERE e.user_id = s.user_id AND e.item_id = s.item_id"
                " AND e.ts = s.ts AND e.qty = s.qty AND e.event_type = s.event_type)"
            )
            return _count(con, "events") - before

        report.events_added = run_with_progress(con, insert, "writing events", show=show_progress)
    for table in item_tables:
        con.execute(f"INSERT OR REPLACE INTO items SELECT {_NORMALIZED_ITEM_COLUMNS} FROM {table}")
        report.items_upserted += _count(con, table)


def _normalized_events_sql(table: str, *, arrival_from: int | None = None) -> str:
    """Canonical event columns; with ``arrival_from``, also each row's place in the input."""
    arrival = "" if arrival_from is None else f"{arrival_from} + row AS arrival, "
    return (
        f"SELECT {arrival}trim(user_id) AS user_id, trim(item_id) AS item_id, {_TS_SQL} AS ts,"
        f" CAST(TRY_CAST(qty AS DOUBLE) AS INTEGER) AS qty,"
        f" coalesce(nullif(lower(trim(event_type)), ''), '{DEFAULT_EVENT_TYPE}') AS event_type"
        f" FROM {table}"
    )


@functools.cache
def _memory_database() -> duckdb.DuckDBPyConnection:
    # request-sized batches: handing them to a thread pool costs more than scanning them
    database = duckdb.connect(":memory:", config={"threads": 1})
    database.execute("SET GLOBAL TimeZone = 'UTC'")  # cursors inherit the global setting
    return database


def _arrow_staging(
    table: pa.Table, source: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> pa.Table:
    """An in-memory table shaped like a staged file: text columns and a 1-based ``row``."""
    present = {name.strip().lower(): name for name in table.column_names}
    missing = [c for c in required if c not in present]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {', '.join(missing)}",
            details=[{"file": source, "column": c, "reason": "missing column"} for c in missing],
        )
    n = table.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"row": pa.array(range(1, n + 1), pa.int64())}
    for column in (*required, *optional):
        if column in present:
            columns[column] = pc.cast(table.column(present[column]), pa.string())
        else:
            columns[column] = pa.nulls(n, pa.string())
    return pa.table(columns)


def _validate_in_memory(
    table: pa.Table,
    source: str,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    checks: tuple[Check, ...],
    normalized_sql: str,
    unique_items: bool = False,
) -> pa.Table:
    """Request-sized batches: the file checks over the Arrow table itself, in two queries.

    Each DuckDB statement has a fixed cost that dominates a batch of a few events, so nothing
    is copied into temp tables; an in-memory database with one cursor per call keeps requests
    apart without opening a database each time.
    """
    staged = _arrow_staging(table, source, required, optional)
    con = _memory_database().cursor()
    try:
        con.register("stage", staged)
        problems = _find_problems(con, "stage", source, checks)
        if unique_items:
            problems += _duplicate_item_problems(con, "stage", source)
        if problems:
            raise DataValidationError(
                "\n".join(p.line() for p in problems), details=[p.detail() for p in problems]
            )
        normalized: pa.Table = con.sql(f"{normalized_sql} ORDER BY row").to_arrow_table()
        return normalized
    finally:
        con.close()


def validate_events(events: pa.Table, source: str = "request") -> pa.Table:
    """Check and normalise events that arrive in memory (the API) exactly as files are checked.

    A missing ``qty`` column means one of each, as in files; the store is not touched.
    """
    if "qty" not in {name.strip().lower() for name in events.column_names}:
        events = events.append_column("qty", pa.array(["1"] * events.num_rows, pa.string()))
    return _validate_in_memory(
        events, source, ("user_id", "item_id", "ts"), ("qty", "event_type"), EVENT_CHECKS,
        _normalized_events_sql("stage"),
    )  # fmt: skip


def validate_items(items: pa.Table, source: str = "request") -> pa.Table:
    """Catalog rows arriving in memory, checked like item files."""
    return _validate_in_memory(
        items, source, ("item_id",), ITEM_FIELDS, ITEM_CHECKS,
        f"SELECT {_NORMALIZED_ITEM_COLUMNS} FROM stage", unique_items=True,
    )  # fmt: skip


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
