"""What each destination has accepted (`destination_state`), what was sent and not confirmed
yet (`destination_in_flight`), the calls it wanted when it last took everything it was owed
(`destination_calls`), and what was sent (`delivery_log`)."""

import json
from datetime import datetime

import duckdb

STATE_DDL = """
CREATE TABLE IF NOT EXISTS destination_state (
    destination VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,          -- audience, audience_user or trait
    name VARCHAR NOT NULL,          -- audience or trait name
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    value JSON,                     -- true for audience members, the value for traits
    accepted_hour TIMESTAMP NOT NULL  -- one row per destination, kind, name and entity_id
);
CREATE TABLE IF NOT EXISTS destination_in_flight (
    destination VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    snapshot_hour TIMESTAMP NOT NULL, -- the snapshot whose change was sent (in its messages)
    sent VARCHAR,                     -- what the messages said, ids and times aside (JSON)
    entity_type VARCHAR               -- account or user, as sent
);
ALTER TABLE destination_in_flight ADD COLUMN IF NOT EXISTS sent VARCHAR;
ALTER TABLE destination_in_flight ADD COLUMN IF NOT EXISTS entity_type VARCHAR;
CREATE TABLE IF NOT EXISTS destination_calls (
    destination VARCHAR PRIMARY KEY,
    calls VARCHAR NOT NULL            -- the calls it wanted at its last complete sync (JSON)
);
CREATE TABLE IF NOT EXISTS delivery_log (
    destination VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    call VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    snapshot_hour TIMESTAMP NOT NULL,
    batch INTEGER,
    sent_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,        -- accepted, rejected, failed, oversized, dry_run
    response_code INTEGER,
    response VARCHAR,
    attempts INTEGER NOT NULL
);
"""


def ensure_state_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the delivery tables if they do not exist yet."""
    con.execute(STATE_DDL)


# What a destination holds for a change that was sent but never confirmed: it may have applied
# it or not. Not JSON, so it equals no value: such a change is always owed again.
UNCONFIRMED = "<sent, not confirmed>"


def accepted_state(
    con: duckdb.DuckDBPyConnection, destination: str
) -> dict[tuple[str, str, str], str]:
    """(kind, name, entity_id) -> accepted value (JSON text) for one destination, or
    `UNCONFIRMED` for a change that was sent without being confirmed (a failed or rejected
    batch, a lost response, a crash before the commit). Even if the snapshot has since gone
    back to the last accepted value, the destination may hold the unconfirmed one."""
    rows = con.execute(
        "SELECT kind, name, entity_id, value FROM destination_state WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    accepted = {(kind, name, entity_id): value for kind, name, entity_id, value in rows}
    in_flight = con.execute(
        "SELECT kind, name, entity_id FROM destination_in_flight WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    return accepted | dict.fromkeys(in_flight, UNCONFIRMED)


def in_flight_changes(
    con: duckdb.DuckDBPyConnection, destination: str
) -> dict[tuple[str, str, str], tuple[str | None, datetime, str | None]]:
    """(kind, name, entity_id) -> what was sent without confirmation (`sent`), the snapshot
    hour its messages were made for and the entity type they were about: sending the same
    messages again repeats them, ids included, so that the destination drops what it already
    applied."""
    rows = con.execute(
        "SELECT kind, name, entity_id, sent, snapshot_hour, entity_type "
        "FROM destination_in_flight WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    return {(kind, name, entity_id): (sent, hour, entity_type)
            for kind, name, entity_id, sent, hour, entity_type in rows}  # fmt: skip


def synced_calls(con: duckdb.DuckDBPyConnection, destination: str) -> set[str] | None:
    """The calls the destination wanted at its last complete sync (None before any)."""
    row = con.execute(
        "SELECT calls FROM destination_calls WHERE destination = $d", {"d": destination}
    ).fetchone()
    return None if row is None else set(json.loads(row[0]))


def record_synced_calls(con: duckdb.DuckDBPyConnection, destination: str, calls: list[str]) -> None:
    """Record the calls of a sync that delivered everything owed."""
    con.execute(
        "INSERT OR REPLACE INTO destination_calls VALUES ($d, $c)",
        {"d": destination, "c": json.dumps(sorted(calls))},
    )
