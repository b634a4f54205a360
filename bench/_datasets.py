"""Public data sets (and the synthetic shop) as events and items files, then as stores.

Each raw file is converted by one DuckDB query straight to Parquet, never through Python rows,
and then goes through the product's own ingest, so the benchmarks evaluate exactly what a user
who loads these files would get.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from _common import ROOT, console, empty_work_folder
from recsys_lite.data import demo
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store

SHARED = ROOT.parent / "shared" / "data"

# Postage, fees, discounts, manual adjustments, samples, carriage, charity and gift vouchers:
# ledger lines rather than things a shopper picks, so recommending them would be noise.
RETAIL_NON_PRODUCTS = (
    "POST",
    "DOT",
    "M",
    "D",
    "S",
    "B",
    "C2",
    "PADS",
    "CRUK",
    "BANK CHARGES",
    "AMAZONFEE",
)


@dataclass(frozen=True)
class Dataset:
    name: str
    store: Store
    events: pa.Table
    items: pa.Table


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _movielens(source: Path, out: Path, con: duckdb.DuckDBPyConnection) -> None:
    ratings, movies = _sql_path(source / "ratings.csv"), _sql_path(source / "movies.csv")
    con.execute(
        f"""COPY (
            SELECT CAST(userId AS VARCHAR) AS user_id, CAST(movieId AS VARCHAR) AS item_id,
                   CAST(timestamp AS BIGINT) AS ts, 1 AS qty, 'rating' AS event_type
            FROM read_csv({ratings}, header = true)
        ) TO {_sql_path(out / "events.parquet")} (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (
            SELECT CAST(movieId AS VARCHAR) AS item_id, title,
                   nullif(split_part(genres, '|', 1), '(no genres listed)') AS category
            FROM read_csv({movies}, header = true, quote = '"')
        ) TO {_sql_path(out / "items.parquet")} (FORMAT parquet)"""
    )


def _online_retail(source: Path, out: Path, con: duckdb.DuckDBPyConnection) -> None:
    raw = _sql_path(source / "online_retail.csv.gz")
    excluded = ", ".join(f"'{code}'" for code in RETAIL_NON_PRODUCTS)
    # all_varchar: CustomerID reads as "17850.0" and some StockCodes look numeric; keeping text
    # avoids both a float user id and a stock code that loses its letter suffix
    con.execute(
        f"""CREATE TEMP TABLE retail AS
            SELECT regexp_replace(trim(CustomerID), '\\.0$', '') AS user_id,
                   trim(StockCode) AS item_id,
                   CAST(epoch(CAST(InvoiceDate AS TIMESTAMP)) AS BIGINT) AS ts,
                   CAST(Quantity AS INTEGER) AS qty,
                   Description AS title, TRY_CAST(UnitPrice AS DOUBLE) AS price
            FROM read_csv({raw}, header = true, all_varchar = true)
            WHERE coalesce(trim(CustomerID), '') <> ''
              AND NOT starts_with(InvoiceNo, 'C')
              AND CAST(Quantity AS INTEGER) > 0
              AND upper(trim(StockCode)) NOT IN ({excluded})
              AND NOT starts_with(lower(StockCode), 'gift_')"""
    )
    con.execute(
        f"""COPY (SELECT user_id, item_id, ts, qty, 'purchase' AS event_type FROM retail)
            TO {_sql_path(out / "events.parquet")} (FORMAT parquet)"""
    )
    # one catalog row per stock code (ingest refuses duplicates): its most common description
    # and its median price
    con.execute(
        f"""COPY (
            SELECT item_id, mode(title) AS title, median(price) AS price FROM retail
            GROUP BY item_id
        ) TO {_sql_path(out / "items.parquet")} (FORMAT parquet)"""
    )


def _demo(out: Path) -> tuple[Path, Path]:
    # generate()'s defaults are the shop a new user meets with `recsys-lite demo-data`
    return demo.write(demo.generate(), out)


Converter = Callable[[Path, Path, duckdb.DuckDBPyConnection], None]
PUBLIC: dict[str, tuple[str, Converter]] = {
    "ml-latest-small": ("ml-latest-small", _movielens),
    "online_retail": ("online_retail", _online_retail),
}
ALL = (*PUBLIC, "demo")


def prepare(name: str) -> Dataset | None:
    """Convert, ingest into a fresh store and read back; None when the source is absent."""
    folder = empty_work_folder("datasets", name)
    if name == "demo":
        events_file, items_file = _demo(folder)
    else:
        source_name, convert = PUBLIC[name]
        source = SHARED / source_name
        if not source.is_dir():
            console.print(f"[yellow]skipping {name}: {source} is absent[/]")
            return None
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")  # invoice times carry no zone; read them as UTC
            convert(source, folder, con)
        events_file, items_file = folder / "events.parquet", folder / "items.parquet"
    store = Store(folder / "store.db")
    ingest(store, events_file, items_file, show_progress=False)
    return Dataset(name, store, store.read_events(), store.read_items())
