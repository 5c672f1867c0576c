"""The DuckDB warehouse: connections and the tables of the ingest stage.

All timestamps in the warehouse are UTC, stored without a time zone.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from account_hierarchy.settings import duckdb_config

LINE_TABLES_DDL = """
CREATE TABLE IF NOT EXISTS raw_events (
    message_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    user_id VARCHAR,
    anonymous_id VARCHAR,
    group_id VARCHAR,
    context_group_id VARCHAR,
    event VARCHAR,
    timestamp TIMESTAMP NOT NULL,
    received_at TIMESTAMP,
    properties JSON,
    traits JSON,
    source_file VARCHAR NOT NULL,
    source_line BIGINT NOT NULL,
    event_hour TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantined_lines (
    source_file VARCHAR NOT NULL,
    source_line BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    raw_line VARCHAR,
    event_hour TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS duplicate_lines (
    source_file VARCHAR NOT NULL,
    source_line BIGINT NOT NULL,
    message_id VARCHAR,
    duplicate_of VARCHAR NOT NULL,
    event_hour TIMESTAMP NOT NULL
);
"""
# The file index: which landing files were read, their content and the hours of their lines.
FILE_INDEX_DDL = """
CREATE TABLE IF NOT EXISTS landing_files (
    path VARCHAR PRIMARY KEY,
    content_hash VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    line_count BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS landing_file_hours (
    path VARCHAR NOT NULL,
    event_hour TIMESTAMP NOT NULL,
    line_count BIGINT NOT NULL
);
"""
INGEST_TABLES_DDL = LINE_TABLES_DDL + FILE_INDEX_DDL

# How long a reader waits for a run that holds DuckDB's single-writer lock.
LOCK_WAIT_SECONDS = 10.0


class WarehouseError(RuntimeError):
    """The warehouse file cannot be opened."""


class WarehouseBusyError(WarehouseError):
    """The warehouse file is locked by another process (a Dagster run writing to it)."""


class EngineMismatchError(WarehouseError):
    """The warehouse holds tables the other engine made (Spark's are views over its lake)."""


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating its folder), in UTC and within the memory limit of
    `settings.duckdb_config`, waiting briefly if a run holds it."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=duckdb_config())
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                if "lock" in str(error).lower():
                    raise WarehouseBusyError(
                        f"The warehouse {path} is locked by another process (a Dagster run is "
                        "probably writing to it); try again when the run has finished."
                    ) from error
                raise WarehouseError(
                    f"The warehouse {path} cannot be opened: {str(error).splitlines()[0]} "
                    f"(is {path} a DuckDB database file?)"
                ) from error
            time.sleep(0.25)
    con.execute("SET TimeZone = 'UTC'")
    return con


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the warehouse's own tables and views (a Spark lake's tables are views),
    not the connection's temporary tables."""
    return {name for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    ).fetchall()}  # fmt: skip


def rows_if_table_exists(con: duckdb.DuckDBPyConnection, query: str, params: dict) -> list[tuple]:
    """The query's rows; no rows when its table does not exist yet."""
    try:
        return con.execute(query, params).fetchall()
    except duckdb.CatalogException:
        return []


@contextmanager
def open_warehouse(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """`connect` as a context manager that closes the connection."""
    con = connect(path, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The statements run inside are committed together, or none of them on any error."""
    con.begin()
    try:
        yield
    except BaseException:
        con.rollback()
        raise
    con.commit()


@contextmanager
def in_memory(threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB in UTC, for work done away from the warehouse (checking a
    landing file, a Spark task's share of a stage), on `threads` threads (default: all)."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


# Each event hour's version: how many events it holds and a checksum of their rows, whatever
# columns the table has (an event rewritten in place, under the same messageId, changes it).
EVENT_HOUR_VERSIONS_SQL = (
    "SELECT event_hour, count(*) AS events, bit_xor(hash(event_row)) AS checksum "
    "FROM {table} AS event_row GROUP BY event_hour"
)


class EventsNotLoadedError(LookupError):
    """Landing lines of an hour a snapshot needs were never loaded."""


def require_events_loaded(con: duckdb.DuckDBPyConnection, first: datetime, end: datetime) -> None:
    """Fail clearly when hours of `[first, end)` hold landing lines (as the file index knows
    them) of which nothing is in `raw_events`, `quarantined_lines` or `duplicate_lines`: a
    snapshot as of an hour needs every earlier event. (Hours loaded before a file landed are
    the landing sensor's to load again.)"""
    existing = table_names(con)
    if "landing_file_hours" not in existing:
        return
    loaded = " UNION ".join(
        f"SELECT DISTINCT event_hour FROM {table} WHERE event_hour < $end"
        for table in ("raw_event_hours", "quarantined_lines", "duplicate_lines")
        if table in existing
    )
    missing = con.execute(
        "SELECT event_hour, sum(line_count)::BIGINT FROM landing_file_hours AS f "
        f"ANTI JOIN ({loaded or 'SELECT NULL::TIMESTAMP AS event_hour'}) USING (event_hour) "
        "WHERE event_hour >= $first AND event_hour < $end GROUP BY 1 ORDER BY 1",
        {"first": first, "end": end},
    ).fetchall()
    if missing:
        hours = f"{missing[0][0]:%Y-%m-%d %H:00}" + (
            f" to {missing[-1][0]:%Y-%m-%d %H:00}" if len(missing) > 1 else ""
        )
        raise EventsNotLoadedError(
            f"the landing files hold {sum(n for _, n in missing)} lines of {len(missing)} "
            f"hour(s) before {end:%Y-%m-%d %H:00} that were never loaded ({hours}): a snapshot "
            "needs every earlier event; materialize raw_events for them first (a range from "
            f"{missing[0][0]:%Y-%m-%d-%H:00}, as the landing sensor does)"
        )


def ensure_ingest_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ingest tables if they do not exist yet."""
    con.execute(INGEST_TABLES_DDL)
    ensure_event_hours(con)


def ensure_file_index(con: duckdb.DuckDBPyConnection) -> None:
    """Create the file index tables if they do not exist yet (the `spark` engine keeps its
    lines in the lake, but its file index here)."""
    con.execute(FILE_INDEX_DDL)


def ensure_event_hours(con: duckdb.DuckDBPyConnection) -> None:
    """Create `raw_event_hours` (the version of every hour of `raw_events`, which ingestion
    keeps and the hourly caches compare with), from `raw_events` for a warehouse made before
    the table existed."""
    if "raw_event_hours" not in table_names(con):
        con.execute(INGEST_TABLES_DDL)
        con.execute(
            "CREATE TABLE raw_event_hours AS " + EVENT_HOUR_VERSIONS_SQL.format(table="raw_events")
        )
