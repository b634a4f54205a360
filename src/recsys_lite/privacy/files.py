"""Event files kept on disk (the API's inbox and its processed/ and rejected/ folders, the
watched folder's processed/ and rejected/): rewritten without an erased shopper's rows.

Each file that holds such rows is rewritten in its own format beside itself and renamed over
it, so a reader sees the old file or the new one, never half of one. Rows are matched by the
keyed hash of their normalised user id, so an id spelt with surrounding spaces in a file is
found too. The error notes beside rejected files quote offending values; a note naming the
shopper is rewritten with the id replaced.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb

from recsys_lite.data.ids import id_sql
from recsys_lite.data.subjects import subject_hash_sql
from recsys_lite.files import fsync_directory

_FORMATS = {
    ".parquet": ("read_parquet('{path}')", "(FORMAT parquet)"),
    ".csv": ("read_csv('{path}', all_varchar = true, header = true)", "(FORMAT csv, HEADER)"),
    ".csv.gz": (
        "read_csv('{path}', all_varchar = true, header = true)",
        "(FORMAT csv, HEADER, COMPRESSION gzip)",
    ),
    ".jsonl": ("read_json('{path}', format = 'newline_delimited')", "(FORMAT json)"),
    ".ndjson": ("read_json('{path}', format = 'newline_delimited')", "(FORMAT json)"),
    ".jsonl.gz": (
        "read_json('{path}', format = 'newline_delimited')",
        "(FORMAT json, COMPRESSION gzip)",
    ),
    ".json": ("read_json('{path}')", "(FORMAT json, ARRAY true)"),
}
ERROR_NOTE = ".error.txt"
REDACTED = "[erased]"


def _format(path: Path) -> tuple[str, str] | None:
    name = path.name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return _FORMATS[suffix]
    return None


def scrub_file(path: Path, key: str, subject: str) -> int:
    """Rewrite ``path`` without the subject's rows; the number of rows removed."""
    shape = _format(path)
    if shape is None:
        return 0
    reader, writer = shape
    source = reader.format(path=str(path).replace("'", "''"))
    con = duckdb.connect(":memory:")
    try:
        columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        if "user_id" not in columns:
            return 0
        matches = f"{subject_hash_sql(key, id_sql('CAST(user_id AS VARCHAR)'))} = '{subject}'"
        (found,) = con.execute(f"SELECT count(*) FROM {source} WHERE {matches}").fetchone() or (0,)
        if not found:
            return 0
        temporary = path.with_name(f".{path.name}.scrub")
        con.execute(
            f"COPY (SELECT * FROM {source} WHERE NOT coalesce({matches}, false))"
            f" TO '{str(temporary).replace(chr(39), chr(39) * 2)}' {writer}"
        )
    except duckdb.Error:
        return 0  # not a readable event file: nothing of a shopper's can be read from it
    finally:
        con.close()
    with temporary.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)
    return int(found)


def scrub_note(path: Path, user_id: str) -> bool:
    """Replace the raw id in a rejected file's error note; whether it held the id."""
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text()
        if user_id in text:
            temporary = path.with_name(f".{path.name}.scrub")
            temporary.write_text(text.replace(user_id, REDACTED))
            os.replace(temporary, path)
            return True
    return False


def scrub_folders(
    folders: list[Path], key: str, subject: str, user_id: str | None
) -> dict[str, int]:
    """Every event file (and error note) in the folders, not descending further."""
    rows = files = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.name.endswith(ERROR_NOTE):
                if user_id is not None and scrub_note(path, user_id):
                    files += 1
                continue
            removed = scrub_file(path, key, subject)
            rows += removed
            files += removed > 0
    return {"files_rewritten": files, "rows_removed": rows}
