"""The pandera model of a batch of loaded events (the rows `raw_events` receives)."""

import duckdb
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandera.ibis as pa

from account_hierarchy.ingest.segment_spec import MAX_MESSAGE_ID_CHARS, MESSAGE_TYPES
from account_hierarchy.validation import Rule, build_schema, ibis_table, unique, validate_table

TIMESTAMP = dt.Timestamp(scale=6)

EVENT_RULES = [
    Rule("type is a Segment message type", lambda t: t.type.isin(MESSAGE_TYPES)),
    Rule(
        f"messageId has 1 to {MAX_MESSAGE_ID_CHARS} characters",
        lambda t: t.message_id.length().between(1, MAX_MESSAGE_ID_CHARS),
    ),
    Rule(
        "userId or anonymousId is present",
        lambda t: t.user_id.notnull() | t.anonymous_id.notnull(),
    ),
    Rule("group calls have a groupId", lambda t: (t.type != "group") | t.group_id.notnull()),
    Rule("track calls have an event name", lambda t: (t.type != "track") | t.event.notnull()),
    Rule(
        "event_hour is the hour of timestamp",
        lambda t: t.event_hour == t.timestamp.truncate("h"),
    ),
    Rule("source_line is positive", lambda t: t.source_line >= 1),
    unique("message_id"),
]

EVENTS_SCHEMA = build_schema(
    "raw_events",
    {
        "message_id": pa.Column(dt.string),
        "type": pa.Column(dt.string),
        "user_id": pa.Column(dt.string, nullable=True),
        "anonymous_id": pa.Column(dt.string, nullable=True),
        "group_id": pa.Column(dt.string, nullable=True),
        "context_group_id": pa.Column(dt.string, nullable=True),
        "event": pa.Column(dt.string, nullable=True),
        "timestamp": pa.Column(TIMESTAMP),
        "received_at": pa.Column(TIMESTAMP, nullable=True),
        "properties": pa.Column(nullable=True),
        "traits": pa.Column(nullable=True),
        "source_file": pa.Column(dt.string),
        "source_line": pa.Column(dt.int64),
        "event_hour": pa.Column(TIMESTAMP),
    },
    EVENT_RULES,
)


def validate_events(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Validate a warehouse table of events about to be loaded; raise `FrameValidationError`
    if broken."""
    validate_event_rows(ibis_table(con, table))


def validate_event_rows(rows: ir.Table) -> None:
    """Validate events about to be loaded, on whichever engine holds them."""
    validate_table(EVENTS_SCHEMA, rows, EVENT_RULES, ["source_file", "source_line", "message_id"])
