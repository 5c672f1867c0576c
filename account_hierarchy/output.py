"""Printing rows for people (an aligned table) or for machines (`--format jsonl`)."""

import base64
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import click
import numpy as np
import pandas as pd
from tabulate import tabulate

FORMATS = ("table", "jsonl")

format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people, jsonl (one JSON object per line) for machines.",
)


def plain(value: Any) -> Any:
    """A value as plain JSON-able Python: times as ISO text (in UTC), decimals as floats,
    durations as seconds, UUIDs as text, bytes as base64 text, NumPy scalars and arrays as
    Python ones, and NaN, infinities (which JSON cannot carry) and pandas' missing values as
    null."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # (UTC, as the warehouse's times)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(item) for item in value]
    return value


def emit(rows: Iterable[Mapping[str, Any]], output_format: str) -> None:
    """Print rows as JSON lines or as a table with a header."""
    rows = list(rows)
    if output_format == "jsonl":
        for row in rows:
            click.echo(json.dumps({key: plain(value) for key, value in row.items()}))
        return
    if not rows:
        click.echo("(no rows)")
        return
    table = [{escaped(key): table_cell(value) for key, value in row.items()} for row in rows]
    click.echo(_table(table))


def _table(rows: list[dict]) -> str:
    """Rows as a readable table, text as it is (`007`, not 7; spaces around it kept)."""
    return tabulate(rows, headers="keys", disable_numparse=True, preserve_whitespace=True)


def table_cell(value: Any) -> Any:
    """A table cell: a list, mapping or boolean as its compact JSON (`true`, its items as
    `plain` makes them), not Python's repr; a time as itself (`2026-10-01 10:00:00`); any
    other value as `plain` makes it (NaN and infinities empty, as null; durations in
    seconds), as jsonl shows it. Control characters in text but the line feed, which would
    move the columns after them, are written as escapes (`escaped`)."""
    if isinstance(value, Mapping | list | tuple | np.ndarray | bool | np.bool_):
        return compact_json(value)
    if isinstance(value, datetime | date | time) and value is not pd.NaT:
        return value
    value = plain(value)
    return escaped(value) if isinstance(value, str) else value


# Control characters but the line feed (a table's cell keeps its lines), and the other
# characters Python starts a new line at.
CONTROL_CHARACTER = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def escaped(text: str) -> str:
    """Text with its `CONTROL_CHARACTER`s written as escapes (`\\t`, `\\x1b`, `\\u2028`)."""
    return CONTROL_CHARACTER.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    return {"\t": "\\t", "\r": "\\r"}.get(
        match[0], f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"
    )


def shown(value: Any) -> str:
    """A value in a line of text: text as itself, anything else (a list, null, a boolean, a
    time) as its compact JSON, not Python's repr."""
    value = plain(value)
    return value if isinstance(value, str) else compact_json(value)


def one_line(text: str) -> str:
    """Text on one line (a name in a tree, a `key: value` line, a markdown cell): its control
    characters written as escapes (`escaped`), its line feeds as `\\n`."""
    return escaped(text).replace("\n", "\\n")


def compact_json(value: Any) -> str:
    """A value as compact JSON (`["a","b"]`, `null`, `true`), its parts as `plain` makes them."""
    return json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))


def emit_record(record: Mapping[str, Any], output_format: str) -> None:
    """Print one nested record: one JSON line, or for people its plain fields as `name: value`
    lines, then each mapping (e.g. traits) and list of rows as a titled table."""
    if output_format == "jsonl":
        click.echo(json.dumps(plain(record)))
        return
    nested = {key: value for key, value in record.items() if isinstance(value, Mapping | list)}
    for key, value in record.items():
        if key not in nested:
            click.echo(f"{key}: {one_line(shown(value))}")
    for key, value in nested.items():
        click.echo(f"\n{key}:")
        if isinstance(value, Mapping):
            rows = [{"name": escaped(name), "value": table_cell(item)}
                    for name, item in value.items()]  # fmt: skip
        elif value and not isinstance(value[0], Mapping):
            click.echo("  " + " > ".join(one_line(shown(item)) for item in value))
            continue
        else:
            rows = [_flatten(row) for row in value]
        click.echo(_table(rows) if rows else "  (none)")


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """Inline a nested `traits` mapping as `traits.key` columns."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            flat |= {escaped(f"{key}.{name}"): table_cell(item) for name, item in value.items()}
        else:
            flat[escaped(key)] = table_cell(value)
    return flat
