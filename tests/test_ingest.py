"""Ingestion: every kind of bad input is refused with file, row, column and reason, and
nothing is written; good input of each format lands once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.errors import DataValidationError

HEADER = "user_id,item_id,ts,qty,event_type\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def events_in(db: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            "SELECT user_id, item_id, ts, qty, event_type FROM events ORDER BY ts, user_id, item_id"
        ).fetchall()
    finally:
        con.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "shop.db")


def test_csv_events_land_with_normalised_timestamps(tmp_path: Path, store: Store) -> None:
    csv = write(
        tmp_path / "events.csv",
        HEADER
        + "u1,i1,1700000000,2,purchase\n"
        + "u1,i2,1700000000123,1,VIEW\n"  # epoch milliseconds
        + "u2,i1,2023-11-14T22:13:20Z,1,\n",  # ISO string, empty type → purchase
    )
    report = ingest(store, csv, show_progress=False)
    assert report.events_added == 3
    assert events_in(store.path) == [
        ("u1", "i1", 1_700_000_000, 2, "purchase"),
        ("u1", "i2", 1_700_000_000, 1, "view"),
        ("u2", "i1", 1_700_000_000, 1, "purchase"),
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("u1,i1,1700000000,-2,purchase", "events.csv: row 2, column qty: negative quantity '-2'"),
        ("u1,i1,1700000000,abc,purchase", "events.csv: row 2, column qty: not an integer 'abc'"),
        ("u1,i1,1700000000,1.5,purchase", "events.csv: row 2, column qty: not an integer '1.5'"),
        (",i1,1700000000,1,purchase", "events.csv: row 2, column user_id: empty id"),
        ("u1,  ,1700000000,1,purchase", "events.csv: row 2, column item_id: empty id"),
        ("u1,i1,yesterday,1,purchase", "events.csv: row 2, column ts: unparseable timestamp"),
        ("u1,i1,,1,purchase", "events.csv: row 2, column ts: missing timestamp"),
    ],
)
def test_bad_event_rows_are_named(tmp_path: Path, store: Store, row: str, expected: str) -> None:
    csv = write(tmp_path / "events.csv", HEADER + "u0,i0,1700000000,1,view\n" + row + "\n")
    with pytest.raises(DataValidationError) as caught:
        ingest(store, csv, show_progress=False)
    assert expected in str(caught.value)
    assert not store.path.exists() or events_in(store.path) == []


def test_many_bad_rows_are_summarised(tmp_path: Path, store: Store) -> None:
    rows = "".join(f"u{n},i{n},1700000000,-{n},view\n" for n in range(1, 9))
    csv = write(tmp_path / "events.csv", HEADER + rows)
    with pytest.raises(DataValidationError) as caught:
        ingest(store, csv, show_progress=False)
    message = str(caught.value)
    assert "rows 1, 2, 3, 4, 5 and 3 more, column qty: negative quantity" in message
    assert caught.value.details[0]["count"] == 8


def test_missing_column_is_named(tmp_path: Path, store: Store) -> None:
    csv = write(tmp_path / "events.csv", "user_id,item_id,qty\nu1,i1,1\n")
    with pytest.raises(DataValidationError, match=r"events.csv: missing column\(s\) ts"):
        ingest(store, csv, show_progress=False)


def test_a_bad_file_writes_nothing_at_all(tmp_path: Path, store: Store) -> None:
    good = write(tmp_path / "good.csv", HEADER + "u1,i1,1700000000,1,view\n")
    ingest(store, good, show_progress=False)
    folder = tmp_path / "batch"
    folder.mkdir()
    write(folder / "a.csv", HEADER + "u2,i2,1700000001,1,view\n")
    write(folder / "b.csv", HEADER + "u3,i3,1700000002,-1,view\n")
    items = write(tmp_path / "items.csv", "item_id,title\ni9,Nine\n")
    with pytest.raises(DataValidationError, match=r"b\.csv: row 1, column qty"):
        ingest(store, folder, items, show_progress=False)
    assert events_in(store.path) == [("u1", "i1", 1_700_000_000, 1, "view")]
    con = duckdb.connect(str(store.path), read_only=True)
    assert con.execute("SELECT count(*) FROM items").fetchone() == (0,)
    con.close()


def test_ingesting_the_same_file_twice_adds_nothing(tmp_path: Path, store: Store) -> None:
    csv = write(
        tmp_path / "events.csv",
        HEADER + "u1,i1,1700000000,1,view\nu1,i2,1700000100,1,purchase\n",
    )
    first = ingest(store, csv, show_progress=False)
    second = ingest(store, csv, show_progress=False)
    assert (first.events_added, second.events_added) == (2, 0)
    assert second.duplicates_skipped == 2
    assert len(events_in(store.path)) == 2


def test_parquet_jsonl_and_folder_inputs(tmp_path: Path, store: Store) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "u2"],
                "item_id": ["i1", "i2"],
                "ts": pa.array([1_700_000_000, 1_700_000_050], pa.int64()),
                "qty": pa.array([1, 3], pa.int32()),
            }
        ),
        folder / "part-1.parquet",
    )
    lines = [
        {
            "user_id": "u3",
            "item_id": "i1",
            "ts": "2023-11-14 22:20:00",
            "qty": 1,
            "event_type": "click",
        },
    ]
    (folder / "part-2.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (folder / "notes.txt").write_text("ignored")
    report = ingest(store, folder, show_progress=False)
    assert report.events_added == 3
    assert ("u3", "i1", 1_700_000_400, 1, "click") in events_in(store.path)
    assert ("u2", "i2", 1_700_000_050, 3, "purchase") in events_in(store.path)


def test_items_are_validated_and_upserted(tmp_path: Path, store: Store) -> None:
    bad = write(tmp_path / "items.csv", "item_id,price,title\ni1,12.5,A\ni1,3,B\ni2,-1,C\n")
    with pytest.raises(DataValidationError) as caught:
        ingest(store, items=bad, show_progress=False)
    message = str(caught.value)
    assert "items.csv: row 3, column price: negative price '-1'" in message
    assert "items.csv: rows 1, 2, column item_id: duplicate id 'i1'" in message

    ingest(
        store,
        items=write(tmp_path / "v1.csv", "item_id,price,title\ni1,10,Old\n"),
        show_progress=False,
    )
    ingest(
        store,
        items=write(tmp_path / "v2.csv", "item_id,price,title\ni1,12,New\n"),
        show_progress=False,
    )
    items = store.read_items().to_pylist()
    assert [(i["item_id"], i["price"], i["title"]) for i in items] == [("i1", 12.0, "New")]


def test_unsupported_and_unreadable_files(tmp_path: Path, store: Store) -> None:
    with pytest.raises(DataValidationError, match="unsupported event file type"):
        ingest(store, write(tmp_path / "events.xlsx", "x"), show_progress=False)
    with pytest.raises(DataValidationError, match="no such file"):
        ingest(store, tmp_path / "absent.csv", show_progress=False)
    broken = write(tmp_path / "broken.jsonl", '{"user_id": "u1", "item_id": \n')
    with pytest.raises(DataValidationError, match=r"broken\.jsonl: cannot be read"):
        ingest(store, broken, show_progress=False)


def read_order(store: Store) -> list[tuple[str, str]]:
    events = store.read_events()
    return list(
        zip(
            events.column("user_id").to_pylist(),
            events.column("item_id").to_pylist(),
            strict=True,
        )
    )


def test_events_sharing_a_second_are_read_back_in_file_order(tmp_path: Path) -> None:
    # a basket written in one second, out of alphabetical order, with another user in between
    basket = write(
        tmp_path / "basket.csv",
        HEADER
        + "u2,zebra,100,1,purchase\n"
        + "u1,mango,100,1,purchase\n"
        + "u2,apple,100,1,purchase\n"
        + "u1,kiwi,99,1,purchase\n",
    )
    later = write(tmp_path / "later.csv", HEADER + "u0,banana,100,1,purchase\n")
    expected = [("u1", "kiwi"), ("u2", "zebra"), ("u1", "mango"), ("u2", "apple"), ("u0", "banana")]
    for name in ("first.db", "second.db"):
        store = Store(tmp_path / name)
        ingest(store, basket, show_progress=False)
        ingest(store, later, show_progress=False)
        ingest(store, basket, show_progress=False)  # already stored: keeps its first place
        assert read_order(store) == expected


def test_a_folder_arrives_file_by_file_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    write(folder / "2026-01.csv", HEADER + "u1,zz-first,5,1,view\n")
    write(folder / "2026-02.jsonl", json.dumps({"user_id": "u0", "item_id": "aa", "ts": 5}) + "\n")
    store = Store(tmp_path / "shop.db")
    ingest(store, folder, show_progress=False)
    assert read_order(store) == [("u1", "zz-first"), ("u0", "aa")]


def test_a_store_made_before_arrival_order_still_ingests(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE events (user_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL,"
        " ts BIGINT NOT NULL, qty INTEGER NOT NULL, event_type VARCHAR NOT NULL)"
    )
    con.execute("INSERT INTO events VALUES ('u1', 'old', 1, 1, 'view')")
    con.close()
    store = Store(path)
    csv = write(tmp_path / "new.csv", HEADER + "u1,new,2,1,view\nu1,newer,2,1,view\n")
    assert ingest(store, csv, show_progress=False).events_added == 2
    assert read_order(store) == [("u1", "old"), ("u1", "new"), ("u1", "newer")]


def test_duplicates_inside_the_input_are_told_apart_from_stored_ones(
    tmp_path: Path, store: Store
) -> None:
    row = "u1,i1,1700000000,1,view\n"
    first = ingest(store, write(tmp_path / "a.csv", HEADER + row * 3), show_progress=False)
    assert (first.events_added, first.duplicates_in_input, first.already_stored) == (1, 2, 0)
    second = ingest(
        store, write(tmp_path / "b.csv", HEADER + row + "u2,i1,1700000000,1,view\n"),
        show_progress=False,
    )  # fmt: skip
    assert (second.events_added, second.duplicates_in_input, second.already_stored) == (1, 0, 1)


def items_in(db: Path) -> dict[str, tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "SELECT item_id, category, brand, price, img_url, title, description FROM items"
            " ORDER BY item_id"
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def availability(db: Path) -> dict[str, bool | None]:
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute("SELECT item_id, available FROM items").fetchall())


def test_a_stock_file_marks_items_unavailable_and_leaves_the_rest(
    tmp_path: Path, store: Store
) -> None:
    full = "item_id,category,price\ni1,Toys,3.5\ni2,Toys,1.0\ni3,Toys,2.0\n"
    ingest(store, items=write(tmp_path / "a.csv", full), show_progress=False)
    assert availability(store.path) == {"i1": None, "i2": None, "i3": None}  # None: available
    stock = "item_id,available\ni1,no\ni2, TRUE \ni3,0\n"
    ingest(store, items=write(tmp_path / "b.csv", stock), show_progress=False)
    assert availability(store.path) == {"i1": False, "i2": True, "i3": False}
    assert items_in(store.path)["i1"] == ("Toys", None, 3.5, None, None, None)
    with pytest.raises(DataValidationError, match="column available: not a boolean"):
        ingest(store, items=write(tmp_path / "c.csv", "item_id,available\ni1,sold out\n"),
               show_progress=False)  # fmt: skip


def test_an_items_file_sets_only_the_columns_it_has(tmp_path: Path, store: Store) -> None:
    full = "item_id,category,brand,price,img_url,title,description\n"
    ingest(store, items=write(tmp_path / "a.csv", full + "i1,Toys,Zizi,3.5,/i1.png,Kite,Red\n"),
           show_progress=False)  # fmt: skip
    # a price list: other fields stay
    ingest(store, items=write(tmp_path / "b.csv", "item_id,price\ni1,4.0\n"), show_progress=False)
    assert items_in(store.path)["i1"] == ("Toys", "Zizi", 4.0, "/i1.png", "Kite", "Red")
    # a present column with an empty cell clears that field
    ingest(store, items=write(tmp_path / "c.csv", "item_id,brand,title\ni1,,Big kite\n"),
           show_progress=False)  # fmt: skip
    assert items_in(store.path)["i1"] == ("Toys", None, 4.0, "/i1.png", "Big kite", "Red")


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("price", "NaN", "not a finite number"),
        ("price", "Infinity", "not a finite number"),
        ("price", "-1", "negative price"),
        ("img_url", "javascript:alert(1)", "not an http(s) URL or a relative path"),
        ("img_url", "data:image/png;base64,AAAA", "not an http(s) URL or a relative path"),
        ("img_url", "//elsewhere.example/x.png", "not an http(s) URL or a relative path"),
    ],
)
def test_catalog_values_a_page_would_misuse_are_refused(
    tmp_path: Path, store: Store, column: str, value: str, reason: str
) -> None:
    path = write(tmp_path / "items.csv", f'item_id,{column}\ni1,"{value}"\n')
    with pytest.raises(DataValidationError, match=re.escape(f"row 1, column {column}: {reason}")):
        ingest(store, items=path, show_progress=False)
    assert items_in(store.path) == {}


def test_links_may_be_http_urls_or_relative_paths(tmp_path: Path, store: Store) -> None:
    links = ["https://cdn.shop.example/i1.png", "HTTP://cdn.shop.example/a?b=1", "/img/i3.png",
             "img/i4.png"]  # fmt: skip
    rows = "".join(f"i{n},{link}\n" for n, link in enumerate(links))
    ingest(store, items=write(tmp_path / "items.csv", "item_id,img_url\n" + rows),
           show_progress=False)  # fmt: skip
    assert [row[3] for row in items_in(store.path).values()] == links


def test_a_store_written_before_availability_is_read_as_all_available(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE items (item_id VARCHAR PRIMARY KEY, category VARCHAR, brand VARCHAR,"
            " price DOUBLE, img_url VARCHAR, title VARCHAR, description VARCHAR)"
        ).fetchall()
        con.execute(
            "INSERT INTO items VALUES ('i1', 'Toys', NULL, 1.0, NULL, 'Kite', NULL)"
        ).fetchall()
    items = Store(db).read_items()  # read-only: the schema is not upgraded
    assert items.column("available").to_pylist() == [None]
    assert items.column("title").to_pylist() == ["Kite"]
