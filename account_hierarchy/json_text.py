"""Reading JSON text as DuckDB keeps it.

Ingestion accepts the non-finite numbers DuckDB's JSON reader accepts (`NaN`, `nan`, `-inf`,
`Infinity`, in any case) and keeps them as written in `properties` and `traits`. Python's
`json` reads only `NaN`, `Infinity` and `-Infinity`, so the others are spelled that way first.
"""

import json
import re
from typing import Any

import duckdb

# A string (skipped whole, so that its text is never touched), or a non-finite number.
_STRING_OR_NON_FINITE = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?<![\w.])(-?)(nan|inf(?:inity)?)(?!\w)', re.IGNORECASE | re.DOTALL
)


def _python_spelling(match: re.Match) -> str:
    sign, word = match.groups()
    if word is None:
        return match.group(0)
    return "NaN" if word.lower() == "nan" else f"{sign}Infinity"


def parse_json(text: str) -> Any:
    """The value of JSON text that DuckDB accepted (non-finite numbers read as floats)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(_STRING_OR_NON_FINITE.sub(_python_spelling, text))


def fetch_rows(cursor: duckdb.DuckDBPyConnection) -> list[tuple]:
    """The rows of an executed query, each JSON column's values read as the values they hold
    (not as their text)."""
    is_json = [str(kind) == "JSON" for _, kind, *_ in cursor.description]
    return [
        tuple(parse_json(value) if json and value is not None else value
              for json, value in zip(is_json, row, strict=True))
        for row in cursor.fetchall()
    ]  # fmt: skip
