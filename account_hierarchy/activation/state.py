"""What each destination has accepted (`destination_state`) and what was sent (`delivery_log`)."""

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


def accepted_state(
    con: duckdb.DuckDBPyConnection, destination: str
) -> dict[tuple[str, str, str], str]:
    """(kind, name, entity_id) -> accepted value (JSON text) for one destination."""
    rows = con.execute(
        "SELECT kind, name, entity_id, value FROM destination_state WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    return {(kind, name, entity_id): value for kind, name, entity_id, value in rows}
