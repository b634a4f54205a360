"""The one rule for external ids (users and items), in the three forms the product needs.

An id is Unicode text, NFC-normalised, with surrounding spaces (any Unicode space separator)
removed, 1 to ``MAX_ID_LENGTH`` characters long, and free of control and invisible format
characters. Without this, two spellings of one id ("U1" and "U1\\0", composed and decomposed
accents) reach an id map as two users, or as one after numpy silently drops a trailing NUL.

The same rule is written three times because it runs in three engines: SQL (DuckDB, file and
request ingestion), Arrow (id maps over millions of ids) and Python (a query parameter). The
regular expressions are shared by DuckDB and Arrow (both use RE2); tests check that the three
agree on hostile inputs.
"""

from __future__ import annotations

import unicodedata

import pyarrow as pa
import pyarrow.compute as pc

MAX_ID_LENGTH = 256
# C0/C1 controls (NUL, tab, newline, DEL, ...) and format characters (zero-width space, BOM...)
FORBIDDEN_CHARACTERS = r"[\p{Cc}\p{Cf}]"
_EDGE_SPACES = r"^\p{Z}+|\p{Z}+$"
_FORBIDDEN_CATEGORIES = ("Cc", "Cf")


def id_sql(column: str) -> str:
    """SQL for the normalised form of a text column (trim, NFC)."""
    return f"nfc_normalize(regexp_replace({column}, '{_EDGE_SPACES}', '', 'g'))"


def id_problem_sql(column: str) -> list[tuple[str, str]]:
    """(SQL condition true for bad rows, reason) for an id column, in the order to check."""
    normalised = id_sql(column)
    return [
        (f"{column} IS NULL OR {normalised} = ''", "empty id"),
        (
            f"regexp_matches({column}, '{FORBIDDEN_CHARACTERS}')",
            "control or invisible character in id",
        ),
        (f"length({normalised}) > {MAX_ID_LENGTH}", f"id longer than {MAX_ID_LENGTH} characters"),
    ]


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id, or None."""
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in value):
        return "control or invisible character in id"
    normalised = _normalise(value)
    if not normalised:
        return "empty id"
    if len(normalised) > MAX_ID_LENGTH:
        return f"id longer than {MAX_ID_LENGTH} characters"
    return None


def _normalise(value: str) -> str:
    # str.strip drops exactly the Unicode space separators once controls are excluded
    return unicodedata.normalize("NFC", value.strip())


def normalise_id(value: str) -> str:
    """The canonical form of one id; ValueError (with the reason) if it cannot be an id."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return _normalise(value)


def invalid_ids(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Boolean mask of values that are not canonical ids (not normalised, or not allowed)."""
    text = pc.cast(values, pa.string())
    normalised = pc.utf8_normalize(pc.replace_substring_regex(text, _EDGE_SPACES, ""), form="NFC")
    bad = pc.or_(
        pc.match_substring_regex(text, FORBIDDEN_CHARACTERS),
        pc.or_(
            pc.not_equal(normalised, text),
            pc.or_(
                pc.equal(pc.utf8_length(text), 0),
                pc.greater(pc.utf8_length(text), MAX_ID_LENGTH),
            ),
        ),
    )
    return pc.fill_null(bad, True)
