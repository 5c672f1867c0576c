"""The hierarchy stage's warehouse tables. Each row belongs to a `snapshot_hour`: the snapshot
as of the end of that hour (events with `timestamp < snapshot_hour + 1 hour`)."""

from datetime import datetime

import duckdb

HIERARCHY_TABLES_DDL = """
CREATE TABLE IF NOT EXISTS users (
    snapshot_hour TIMESTAMP NOT NULL,
    user_id VARCHAR NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    traits JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    snapshot_hour TIMESTAMP NOT NULL,
    account_id VARCHAR NOT NULL,
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    user_count BIGINT NOT NULL,
    parent_account_id VARCHAR,
    traits JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS account_memberships (
    snapshot_hour TIMESTAMP NOT NULL,
    user_id VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    first_associated_at TIMESTAMP NOT NULL,
    last_associated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS account_hierarchy (
    snapshot_hour TIMESTAMP NOT NULL,
    account_id VARCHAR NOT NULL,
    parent_account_id VARCHAR,
    ultimate_parent_id VARCHAR NOT NULL,
    depth INTEGER NOT NULL,
    path VARCHAR[] NOT NULL,
    in_cycle BOOLEAN NOT NULL,
    parent_missing BOOLEAN NOT NULL
);
"""

# The columns each entity table always has, before its typed trait columns.
USER_COLUMNS = ("snapshot_hour", "user_id", "first_seen_at", "last_seen_at", "traits")
ACCOUNT_COLUMNS = (
    "snapshot_hour",
    "account_id",
    "first_seen_at",
    "last_seen_at",
    "user_count",
    "parent_account_id",
    "traits",
)


def record_snapshot_hours(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """Record that the snapshots of `[start, end)` were built (`hierarchy_hours`): an hour
    before the first event has no rows, and is built all the same."""
    con.execute("CREATE TABLE IF NOT EXISTS hierarchy_hours (snapshot_hour TIMESTAMP NOT NULL)")
    params = {"start": start, "end": end}
    con.execute(
        "DELETE FROM hierarchy_hours WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        params,
    )
    con.execute(
        "INSERT INTO hierarchy_hours SELECT unnest(generate_series($start::TIMESTAMP, "
        "$end::TIMESTAMP - INTERVAL 1 HOUR, INTERVAL 1 HOUR))",
        params,
    )


def ensure_hierarchy_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the hierarchy tables if they do not exist yet."""
    con.execute(HIERARCHY_TABLES_DDL)
