"""Helpers that turn warehouse facts into Dagster metadata (column schemas, previews)."""

from datetime import datetime

import dagster as dg
import duckdb
import pandas as pd
from tabulate import tabulate

from account_hierarchy.output import one_line, plain, table_cell


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    """The column names and types of a warehouse table, for `dagster/column_schema`."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = $table ORDER BY ordinal_position",
        {"table": table},
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in rows])


# The check every stage runs on the rows it stored: do they still satisfy the pandera model?
MATCHES_SCHEMA = "matches_schema"


def schema_check(problems: str | None, asset_key: str | None = None) -> dg.AssetCheckResult:
    """The `matches_schema` check of the rows a run stored, from `validation.recheck_stored`'s
    message: failed when they break their table's pandera model, saying which rules and rows."""
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=MATCHES_SCHEMA,
        passed=problems is None,
        description=f"The stored rows break the table's model: {problems}" if problems else None,
        metadata={"problems": problems or "none"},
    )


# The characters of a text cell a markdown table shows (the rest is cut, ending in `…`):
# metadata shows values of the input (ids, reasons quoting a line's value), which may be long.
CELL_CHARS = 200


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """Rows as a markdown table whose text cells cannot break it: a `|`, a backslash or a line
    break in a value is escaped (`a|b` shows as `a|b`, in one cell), and a text longer than
    `CELL_CHARS` is cut short."""
    cells = [[_markdown_text(value) for value in row] for row in rows]
    return tabulate(cells, headers=headers, tablefmt="pipe", missingval="", disable_numparse=True)


def _markdown_text(value: object) -> object:
    if not isinstance(value, str):
        return value
    if len(value) > CELL_CHARS:
        value = value[:CELL_CHARS] + "…"
    return one_line(value.replace("\\", "\\\\").replace("|", "\\|"))


def markdown_preview(frame: pd.DataFrame) -> str:
    """A small frame as a markdown table (empty frames say so), its cells as the CLI's tables
    show them: nulls empty (not `nan`, which could be an id), lists as compact JSON."""
    if frame.empty:
        return "No rows."
    rows = [[table_cell(plain(value)) for value in row] for row in frame.itertuples(index=False)]
    return markdown_table(list(frame.columns), rows)


def last_hour_preview(
    con: duckdb.DuckDBPyConnection, table: str, hour: datetime, hidden: tuple[str, ...] = ()
) -> dg.MetadataValue:
    """The first rows of a snapshot table at `hour` (the run's last hour), as markdown."""
    exclude = f" EXCLUDE ({', '.join(hidden)})" if hidden else ""
    frame = con.execute(
        f"SELECT *{exclude} FROM {table} WHERE snapshot_hour = $hour ORDER BY ALL LIMIT 10",
        {"hour": hour},
    ).df()
    return dg.MetadataValue.md(markdown_preview(frame))
