"""What makes an event or a catalog row valid, as SQL checks shared by files and requests.

Checks run inside DuckDB over text columns (a file staged as VARCHAR, or a request batch as an
Arrow table), so a file and a POST are refused for the same reasons with the same row-level
messages, and rows never pass through Python objects. Request-sized batches are checked here
too, without touching the store.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.config import get_settings
from recsys_lite.data.ids import FORBIDDEN_CHARACTERS, MAX_ID_LENGTH, id_problem_sql, id_sql
from recsys_lite.data.store import ITEM_FIELDS
from recsys_lite.errors import DataValidationError

DEFAULT_EVENT_TYPE = "purchase"
# Optional event columns besides the required user_id, item_id and ts.
OPTIONAL_EVENT_COLUMNS = ("qty", "event_type", "recommendation_id", "position")
MAX_RECOMMENDATION_ID_LENGTH = 64
MAX_POSITION = 10_000
MAX_ROWS_SHOWN = 5
SHOWN_VALUE_LENGTH = 40

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


def _id_checks(column: str) -> tuple[Check, ...]:
    return tuple(Check(column, failing, reason) for failing, reason in id_problem_sql(column))


def _finite_number(column: str) -> str:
    value = f"TRY_CAST({column} AS DOUBLE)"
    return f"{value} IS NOT NULL AND NOT isfinite({value})"


EVENT_CHECKS = (
    *_id_checks("user_id"),
    *_id_checks("item_id"),
    Check("ts", "ts IS NULL OR trim(ts) = ''", "missing timestamp"),
    Check("ts", f"trim(ts) <> '' AND ({_TS_SQL}) IS NULL", "unparseable timestamp"),
    Check("qty", "qty IS NULL OR trim(qty) = ''", "missing quantity"),
    Check("qty", _finite_number("qty"), "not a finite number"),
    Check(
        "qty",
        f"trim(qty) <> '' AND NOT ({_finite_number('qty')}) AND (TRY_CAST(qty AS DOUBLE) IS NULL"
        " OR TRY_CAST(qty AS DOUBLE) <> floor(TRY_CAST(qty AS DOUBLE))"
        " OR abs(TRY_CAST(qty AS DOUBLE)) > 2147483647)",
        "not an integer",
    ),
    Check("qty", "TRY_CAST(qty AS DOUBLE) < 0", "negative quantity"),
    Check("event_type", f"regexp_matches(event_type, '{FORBIDDEN_CHARACTERS}')",
          "control or invisible character"),
    Check("event_type", f"length(trim(event_type)) > {MAX_ID_LENGTH}",
          f"longer than {MAX_ID_LENGTH} characters"),
    Check("recommendation_id", f"regexp_matches(recommendation_id, '{FORBIDDEN_CHARACTERS}')",
          "control or invisible character"),
    Check("recommendation_id",
          f"length(trim(recommendation_id)) > {MAX_RECOMMENDATION_ID_LENGTH}",
          f"longer than {MAX_RECOMMENDATION_ID_LENGTH} characters"),
    Check("position",
          f"trim(position) <> '' AND (TRY_CAST(position AS INTEGER) IS NULL"
          f" OR TRY_CAST(position AS INTEGER) NOT BETWEEN 0 AND {MAX_POSITION})",
          f"not an integer from 0 to {MAX_POSITION}"),
)  # fmt: skip


@functools.cache
def event_checks(max_clock_skew: int) -> tuple[Check, ...]:
    """The event checks, with times more than ``max_clock_skew`` seconds ahead refused: one
    event stamped years ahead would otherwise sit at the end of every time split and hold back
    every retrain that waits for newer data."""
    future = Check(
        "ts",
        f"({_TS_SQL}) > CAST(epoch(current_timestamp) AS BIGINT) + {int(max_clock_skew)}",
        f"more than {int(max_clock_skew)} s in the future (MAX_CLOCK_SKEW)",
    )
    return (*EVENT_CHECKS, future)


# A link is an absolute http(s) URL or a relative path; anything else (javascript:, data:,
# //other-host) would be rendered by a shop's page as given.
_LINK_OK = (
    "regexp_full_match(trim({c}), '(?i)https?://[^\\s/?#]+[^\\s]*')"
    " OR (NOT regexp_matches(trim({c}), '^[a-zA-Z][a-zA-Z0-9+.-]*:')"
    " AND NOT starts_with(trim({c}), '//') AND NOT regexp_matches(trim({c}), '[\\s\\\\]'))"
)
LINK_FIELDS = ("img_url",)

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")

ITEM_CHECKS = (
    *_id_checks("item_id"),
    Check(
        "price",
        "price IS NOT NULL AND trim(price) <> '' AND TRY_CAST(price AS DOUBLE) IS NULL",
        "not a number",
    ),
    Check("price", _finite_number("price"), "not a finite number"),
    Check("price", "TRY_CAST(price AS DOUBLE) < 0", "negative price"),
    *(
        Check(
            field,
            f"{field} IS NOT NULL AND trim({field}) <> '' AND NOT ({_LINK_OK.format(c=field)})",
            "not an http(s) URL or a relative path",
        )
        for field in LINK_FIELDS
    ),
    *(
        Check(field, f"regexp_matches({field}, '[\\x00\\x7f]')", "NUL or DEL character")
        for field in ("category", "brand", "title", "description")
    ),
    Check(
        "available",
        f"available IS NOT NULL AND trim(available) <> ''"
        f" AND lower(trim(available)) NOT IN ({', '.join(map(repr, (*_TRUE, *_FALSE)))})",
        "not a boolean (true, false, 1, 0, yes, no)",
    ),
)

# Columns of a catalog update that say which fields it sets (a list per row). A field not
# listed keeps its stored value; a listed field with a null clears it. Files without the column
# set the columns they have; the API lists the fields each request row gave.
SET_FIELDS = "set_fields"

NORMALIZED_ITEM_COLUMNS = (
    f"{id_sql('item_id')} AS item_id, nullif(trim(category), '') AS category,"
    " nullif(trim(brand), '') AS brand, TRY_CAST(price AS DOUBLE) AS price,"
    " nullif(trim(img_url), '') AS img_url, nullif(trim(title), '') AS title,"
    " nullif(trim(description), '') AS description,"
    f" CASE WHEN lower(trim(available)) IN ({', '.join(map(repr, _TRUE))}) THEN true"
    f" WHEN lower(trim(available)) IN ({', '.join(map(repr, _FALSE))}) THEN false"
    " END AS available"
)


@dataclass
class Problem:
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
        shown = [v for v in self._shown_values() if v not in (None, "")]
        values = f" {', '.join(repr(v) for v in shown)}" if shown else ""
        return f"{self.file}: {noun} {rows}{more}, column {self.column}: {self.reason}{values}"

    def detail(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "column": self.column,
            "reason": self.reason,
            "rows": self.rows,
            "values": self._shown_values(),
            "count": self.total,
        }

    def _shown_values(self) -> list[Any]:
        """Offending values cut to a readable length (an attacker's id can be megabytes)."""
        return [
            v[:SHOWN_VALUE_LENGTH] + "…" if isinstance(v, str) and len(v) > SHOWN_VALUE_LENGTH
            else v
            for v in self.values
        ]  # fmt: skip


def find_problems(
    con: duckdb.DuckDBPyConnection, table: str, file: str, checks: tuple[Check, ...]
) -> list[Problem]:
    """Every check in one scan of the staged rows; which rows fail, and why, in a second scan
    only when some row does.

    The lists of failing rows cost most of a small batch's validation to plan (17 ms of 20
    for one event), and a clean batch needs none of them."""
    conditions = [f"coalesce(({check.failing}), false)" for check in checks]
    (failing,) = con.execute(
        f"SELECT count(*) FILTER (WHERE {' OR '.join(conditions)}) FROM {table}"
    ).fetchall()[0]
    if not failing:
        return []
    aggregates = []
    for check, condition in zip(checks, conditions, strict=True):
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
            problems.append(Problem(file, check.column, check.reason, rows, values, count))
    return problems


def duplicate_item_problems(con: duckdb.DuckDBPyConnection, table: str, file: str) -> list[Problem]:
    key = id_sql("item_id")
    rows = con.execute(
        f"SELECT {key}, list(row ORDER BY row) FROM {table}"
        f" WHERE {key} <> '' GROUP BY {key} HAVING count(*) > 1"
        f" ORDER BY min(row) LIMIT {MAX_ROWS_SHOWN}"
    ).fetchall()
    return [
        Problem(
            file, "item_id", "duplicate id", dup_rows[:MAX_ROWS_SHOWN], [item_id], len(dup_rows)
        )
        for item_id, dup_rows in rows
    ]


def normalized_events_sql(table: str, *, arrival_from: int | None = None) -> str:
    """Canonical event columns; with ``arrival_from``, also each row's place in the input."""
    arrival = "" if arrival_from is None else f"{arrival_from} + row AS arrival, "
    return (
        f"SELECT {arrival}{id_sql('user_id')} AS user_id, {id_sql('item_id')} AS item_id,"
        f" {_TS_SQL} AS ts,"
        f" CAST(TRY_CAST(qty AS DOUBLE) AS INTEGER) AS qty,"
        f" coalesce(nullif(lower(trim(event_type)), ''), '{DEFAULT_EVENT_TYPE}') AS event_type,"
        " nullif(trim(recommendation_id), '') AS recommendation_id,"
        " TRY_CAST(nullif(trim(position), '') AS INTEGER) AS position"
        f" FROM {table}"
    )


@functools.cache
def _memory_database() -> duckdb.DuckDBPyConnection:
    # request-sized batches: handing them to a thread pool costs more than scanning them
    # a bounded buffer pool: it lives as long as the process and sees every request's batch
    database = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": "128MB"})
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
        problems = find_problems(con, "stage", source, checks)
        if unique_items:
            problems += duplicate_item_problems(con, "stage", source)
        if problems:
            raise DataValidationError(
                "\n".join(p.line() for p in problems), details=[p.detail() for p in problems]
            )
        normalized: pa.Table = con.sql(f"{normalized_sql} ORDER BY row").to_arrow_table()
        return normalized
    finally:
        con.close()


def validate_events(
    events: pa.Table, source: str = "request", *, max_clock_skew: int | None = None
) -> pa.Table:
    """Check and normalise events that arrive in memory (the API) exactly as files are checked.

    A missing ``qty`` column means one of each, as in files; the store is not touched.
    """
    skew = get_settings().max_clock_skew if max_clock_skew is None else max_clock_skew
    if "qty" not in {name.strip().lower() for name in events.column_names}:
        events = events.append_column("qty", pa.array(["1"] * events.num_rows, pa.string()))
    return _validate_in_memory(
        events, source, ("user_id", "item_id", "ts"), OPTIONAL_EVENT_COLUMNS, event_checks(skew),
        normalized_events_sql("stage"),
    )  # fmt: skip


def validate_event_requests(requests: list[pa.Table]) -> list[pa.Table | DataValidationError]:
    """Several requests' events validated as one batch (events are checked row by row, so
    together they pass exactly when each does), split back per request. When the batch is
    refused, each half is validated the same way, down to single requests, whose error then
    names their own rows: one bad request among n costs about 2 log2(n) passes, not n."""
    if len(requests) == 1:
        return [_validated_alone(requests[0])]
    try:
        together = validate_events(pa.concat_tables(requests))
    except DataValidationError:
        half = len(requests) // 2
        return validate_event_requests(requests[:half]) + validate_event_requests(requests[half:])
    out: list[pa.Table | DataValidationError] = []
    start = 0
    for request in requests:  # the rows keep their order
        out.append(together.slice(start, request.num_rows))
        start += request.num_rows
    return out


def _validated_alone(events: pa.Table) -> pa.Table | DataValidationError:
    try:
        return validate_events(events)
    except DataValidationError as exc:
        return exc


def validate_items(items: pa.Table, source: str = "request") -> pa.Table:
    """Catalog rows arriving in memory, checked like item files.

    The result always has a ``set_fields`` column: the input's own (the fields each request row
    gave) or, like a file, the fields the input has columns for.
    """
    normalized = _validate_in_memory(
        items, source, ("item_id",), ITEM_FIELDS, ITEM_CHECKS,
        f"SELECT {NORMALIZED_ITEM_COLUMNS} FROM stage", unique_items=True,
    )  # fmt: skip
    if SET_FIELDS in items.column_names:
        given = items.column(SET_FIELDS)
    else:
        present = [name for name in ITEM_FIELDS if name in items.column_names]
        given = pa.array([present] * items.num_rows, pa.list_(pa.string()))
    return normalized.append_column(SET_FIELDS, given)
