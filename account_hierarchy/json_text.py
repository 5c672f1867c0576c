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
    kinds = [str(kind) for _, kind, *_ in cursor.description]

    def read(kind: str, value: Any) -> Any:
        if value is None:
            return None
        if kind == "JSON":
            return parse_json(value)
        if kind == "JSON[]":  # (a `many: true` SQL trait's JSON values)
            return [read("JSON", item) for item in value]
        return value

    return [tuple(read(kind, value) for kind, value in zip(kinds, row, strict=True))
            for row in cursor.fetchall()]  # fmt: skip
