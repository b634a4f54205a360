"""One id rule: files, requests, query parameters and id maps agree on what an id is."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from recsys_lite.data.idmap import IdMap
from recsys_lite.data.ids import MAX_ID_LENGTH, id_problem, id_sql, invalid_ids, normalise_id
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.data.validation import validate_events
from recsys_lite.errors import DataValidationError

HOSTILE = [
    "U1\x00",  # numpy drops a trailing NUL: "U1\0" and "U1" became one id in an id map
    "U\x001",
    "U1\n",
    "\tU1",
    "U1\x7f",
    "U1\u200b",  # zero-width space
    "\ufeffU1",  # byte-order mark
    "U1\x85",  # C1 control (next line)
    "",
    "   ",
    "x" * (MAX_ID_LENGTH + 1),
]
# Spellings that mean the id on the right
EQUIVALENT = {
    " U1 ": "U1",
    "\u00a0U1\u3000": "U1",  # no-break and ideographic spaces
    "Cafe\u0301": "Caf\u00e9",  # decomposed accent, composed
    "x" * MAX_ID_LENGTH: "x" * MAX_ID_LENGTH,
}


@pytest.mark.parametrize("value", HOSTILE)
def test_python_sql_and_arrow_refuse_the_same_ids(value: str) -> None:
    assert id_problem(value) is not None
    with pytest.raises(ValueError):
        normalise_id(value)
    assert invalid_ids(pa.array([value])).to_pylist() == [True]
    with pytest.raises(DataValidationError, match="column user_id"):
        validate_events(pa.table({"user_id": [value], "item_id": ["I1"], "ts": ["1700000000"]}))


@pytest.mark.parametrize(("spelling", "canonical"), EQUIVALENT.items())
def test_every_spelling_of_an_id_normalises_alike(spelling: str, canonical: str) -> None:
    assert normalise_id(spelling) == canonical
    con = duckdb.connect()
    assert con.execute(f"SELECT {id_sql('?::VARCHAR')}", [spelling]).fetchone() == (canonical,)
    events = validate_events(
        pa.table({"user_id": [spelling], "item_id": [spelling], "ts": ["1700000000"]})
    )
    assert events.column("user_id").to_pylist() == [canonical]
    assert invalid_ids(pa.array([canonical])).to_pylist() == [False]
    # the canonical form is the only one an id map takes
    assert invalid_ids(pa.array([spelling])).to_pylist() == [spelling != canonical]


def test_a_file_with_a_nul_id_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id": "U1", "item_id": "I1", "ts": 1700000000}\n'
        '{"user_id": "U1\\u0000", "item_id": "I1", "ts": 1700000001}\n'
    )
    store = Store(tmp_path / "shop.db")
    with pytest.raises(DataValidationError, match=r"row 2, column user_id: control"):
        ingest(store, path, show_progress=False)
    with duckdb.connect(str(store.path)) as con:
        assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_two_spellings_in_files_are_one_user(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,ts\nCafe\u0301,I1,1700000000\n\u00a0Caf\u00e9 ,I2,1700000001\n"
    )
    store = Store(tmp_path / "shop.db")
    ingest(store, path, show_progress=False)
    assert store.counts()["users"] == 1


def test_an_id_map_names_an_id_that_got_around_the_checks() -> None:
    with pytest.raises(DataValidationError, match=r"not a valid id: 'U1\\x00'"):
        IdMap.from_values(pa.array(["U1", "U1\x00"]))
    with pytest.raises(DataValidationError, match="not a valid id"):
        IdMap.from_values(pa.array(["U1"])).add([" U2"])
