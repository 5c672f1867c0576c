"""What each destination has accepted, and in which calls (`destination_state`), the newest
snapshot it was synced to (`destination_snapshots`), what was sent and not confirmed yet
(`destination_in_flight`), and what was sent (`delivery_log`)."""

import json
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from account_hierarchy.catalog.destination_models import CALLS
from account_hierarchy.warehouse import table_names

STATE_DDL = """
CREATE TABLE IF NOT EXISTS destination_state (
    destination VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,          -- audience, audience_user, trait or trait_user
    name VARCHAR NOT NULL,          -- audience or trait name
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    value JSON,                     -- true for audience members, the value for traits;
                                    -- NULL: none (an exit)
    accepted_hour TIMESTAMP NOT NULL, -- one row per destination, kind, name, entity_type and
                                      -- entity_id
    calls VARCHAR,                  -- the calls holding `value` (JSON list; NULL: all three)
    version BIGINT,                 -- how many changes of the key it accepted (NULL: from before)
    unconfirmed VARCHAR,            -- messages sent without confirmation in calls not holding
                                    -- `value` (JSON list), to go again as they went
    left_values VARCHAR             -- what calls not holding `value` hold, as they were left
                                    -- when it changed while they were off (JSON object:
                                    -- call -> value as JSON text or `unknown`; a call not
                                    -- named: none; NULL: from before, not known)
);
ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS calls VARCHAR;
ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS version BIGINT;
ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS unconfirmed VARCHAR;
ALTER TABLE destination_state ADD COLUMN IF NOT EXISTS left_values VARCHAR;
CREATE TABLE IF NOT EXISTS destination_snapshots (
    destination VARCHAR PRIMARY KEY,
    snapshot_hour TIMESTAMP NOT NULL  -- the newest snapshot a sync of it was made for
);
CREATE TABLE IF NOT EXISTS destination_in_flight (
    destination VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    snapshot_hour TIMESTAMP NOT NULL, -- the snapshot whose change was sent (in its messages)
    sent VARCHAR,                     -- the messages sent (JSON; from before: their contents)
    entity_type VARCHAR,              -- account or user, as sent
    version BIGINT                    -- which change of the key they carried (NULL: from before)
);
ALTER TABLE destination_in_flight ADD COLUMN IF NOT EXISTS sent VARCHAR;
ALTER TABLE destination_in_flight ADD COLUMN IF NOT EXISTS entity_type VARCHAR;
ALTER TABLE destination_in_flight ADD COLUMN IF NOT EXISTS version BIGINT;
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
    """Create the delivery tables if they do not exist yet (a warehouse that kept one list of
    calls per destination, `destination_calls`, gets it on each of its states)."""
    con.execute(STATE_DDL)
    if "destination_calls" in table_names(con):
        con.execute(
            "UPDATE destination_state AS s SET calls = c.calls FROM destination_calls AS c "
            "WHERE s.calls IS NULL AND c.destination = s.destination"
        )
        con.execute("DROP TABLE destination_calls")


# What a call holds when it is not known (no JSON text): it is owed the value whatever it is.
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Held:
    """What a destination holds for one change key: the value it accepted (JSON text; None:
    none, an exit), the calls that carried it, how many changes of the key it accepted, the
    messages about it sent without confirmation in calls it was then no longer sent in (JSON;
    a call removed while they were in flight), and the older values other calls still hold
    (calls that were off when the value changed)."""

    value: str | None
    calls: frozenset[str]
    version: int = 0  # how many changes of the key it accepted
    unconfirmed: str | None = None
    # call -> the value it holds (None: states from before, where it is not known)
    left: dict[str, str] | None = field(default_factory=dict)

    def held_in(self, call: str) -> str | None:
        """The value the destination holds for the key in `call` (None: none; `UNKNOWN`)."""
        if call in self.calls:
            return self.value
        return UNKNOWN if self.left is None else self.left.get(call)


NOTHING = Held(None, frozenset(CALLS))  # (a key never sent: no call holds anything)


def held_state(
    con: duckdb.DuckDBPyConnection, destination: str
) -> dict[tuple[str, str, str, str], Held]:
    """(kind, name, entity type, entity id) -> what the destination accepted, for one
    destination."""
    rows = con.execute(
        "SELECT kind, name, entity_type, entity_id, value, calls, coalesce(version, 0), "
        "unconfirmed, left_values FROM destination_state WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    return {
        (kind, name, entity_type, entity_id): Held(
            value,
            frozenset(json.loads(calls)) if calls else NOTHING.calls,
            version,
            unconfirmed,
            None if left is None else json.loads(left),
        )
        for kind, name, entity_type, entity_id, value, calls, version, unconfirmed, left in rows
    }


@dataclass(frozen=True)
class InFlight:
    """A change sent without confirmation: its messages (`sent`, JSON), the snapshot hour they
    were made for and which change of the key it was.
    Sending the same messages again repeats them, ids included, so that the destination drops
    what it already applied; any other change of the key comes after it."""

    sent: str | None
    sent_for: datetime
    version: int


def in_flight_changes(
    con: duckdb.DuckDBPyConnection, destination: str
) -> dict[tuple[str, str, str, str], InFlight]:
    """(kind, name, entity type, entity id) -> the change sent without confirmation (the entity
    type None for changes sent before it was recorded)."""
    rows = con.execute(
        "SELECT kind, name, entity_type, entity_id, sent, snapshot_hour, coalesce(version, 0) "
        "FROM destination_in_flight WHERE destination = $d",
        {"d": destination},
    ).fetchall()
    return {tuple(row[:4]): InFlight(*row[4:]) for row in rows}


def held_count(con: duckdb.DuckDBPyConnection, destination: str) -> int:
    """How many audience memberships and trait values the destination holds (accepted and
    not exited since)."""
    return con.execute(
        "SELECT count(*) FROM destination_state WHERE destination = $d AND value IS NOT NULL",
        {"d": destination},
    ).fetchone()[0]


def synced_hour(con: duckdb.DuckDBPyConnection, destination: str) -> datetime | None:
    """The newest snapshot hour a sync of the destination was made for (None before any; for
    warehouses from before `destination_snapshots`, the newest its state and sends name)."""
    return con.execute(
        "SELECT greatest("
        "(SELECT max(snapshot_hour) FROM destination_snapshots WHERE destination = $d), "
        "(SELECT max(accepted_hour) FROM destination_state WHERE destination = $d), "
        "(SELECT max(snapshot_hour) FROM destination_in_flight WHERE destination = $d))",
        {"d": destination},
    ).fetchone()[0]


def record_synced_hour(con: duckdb.DuckDBPyConnection, destination: str, hour: datetime) -> None:
    """Record that a sync of the destination is made for snapshot `hour` (before it sends)."""
    con.execute(
        "INSERT INTO destination_snapshots VALUES ($d, $h) ON CONFLICT (destination) "
        "DO UPDATE SET snapshot_hour = greatest(snapshot_hour, excluded.snapshot_hour)",
        {"d": destination, "h": hour},
    )
