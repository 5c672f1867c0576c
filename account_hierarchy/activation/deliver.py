"""Delivering what a destination is owed, safely: the peers' pattern.

1. Take the newest snapshot hour the destination's audiences and traits have (a backfill of
   old hours therefore never replays stale transitions: delivery converges on the newest).
2. Plan the items owed: the difference between that snapshot and the state the destination has
   accepted (`destination_state`).
3. Send the messages in batches under 500 KB; a message over 32 KB is logged as `oversized`
   and not sent, without blocking the rest.
4. Before each batch is sent, its items are recorded as in flight (`destination_in_flight`).
   After each accepted batch, in one transaction, log its messages and commit the new state of
   the items whose messages have all been accepted (no longer in flight). A crash loses
   nothing and duplicates nothing but message ids (which are deterministic): an item still in
   flight is owed again, even if the snapshot has gone back to the last accepted value, since
   the destination may have applied what was sent (a lost response, a crash before the commit).
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from account_hierarchy.activation.plan import Item, newest_hour, plan
from account_hierarchy.activation.state import ensure_state_tables, record_synced_hour
from account_hierarchy.activation.transport import DestinationUnavailableError, Outcome, Sender
from account_hierarchy.audiences.memberships import ensure_audience_hours
from account_hierarchy.catalog.destination_models import Destination
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.traits.compute import ensure_trait_hours
from account_hierarchy.warehouse import transaction

MAX_MESSAGE_BYTES = 32 * 1024  # Segment's libraries' limit of a message
MAX_BATCH_BYTES = 500_000  # under 500 KB however a KB is counted
ENVELOPE_BYTES = 200  # {"batch": [...], "sentAt": "..."} around the messages
STATE_SCHEMA = pa.schema(
    [(name, pa.string()) for name in
     ("destination", "kind", "name", "entity_type", "entity_id", "value", "calls")]
    + [("version", pa.int64()), ("unconfirmed", pa.string()), ("left_values", pa.string())]
)  # fmt: skip
KEY_SCHEMA = pa.schema(
    [(name, pa.string()) for name in ("destination", "kind", "name", "entity_type", "entity_id")]
)
IN_FLIGHT_SCHEMA = pa.schema(
    [*KEY_SCHEMA, pa.field("snapshot_hour", pa.timestamp("us")),
     pa.field("sent", pa.string()), pa.field("version", pa.int64())]
)  # fmt: skip
_SAME_KEY = ("f.destination = i.destination AND f.kind = i.kind AND f.name = i.name "
             "AND f.entity_id = i.entity_id "
             # (a change in flight from before entity types were recorded has none)
             "AND coalesce(f.entity_type, i.entity_type) = i.entity_type")  # fmt: skip
LOG_SCHEMA = pa.schema([("message_id", pa.string()), ("call", pa.string()),
                        ("entity_id", pa.string())])  # fmt: skip


@dataclass
class SyncReport:
    """What one sync did."""

    snapshot_hour: datetime | None = None
    items: int = 0
    silent_items: int = 0  # changes whose calls the destination does not take: no message
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    oversized: int = 0
    committed_items: int = 0
    batches: int = 0
    planned: list[dict] = field(default_factory=list)


def _size(message: dict) -> int:
    return len(json.dumps(message).encode())


def batches_of(groups: list[list[dict]]) -> list[list[dict]]:
    """Consecutive groups of messages (an item's, at most two of at most 32 KB each) in
    batches under the batch size limit, a group never split: the destination accepts or
    refuses an item's messages together, so an unconfirmed item is one that went whole."""
    result: list[list[dict]] = []
    current: list[dict] = []
    size = ENVELOPE_BYTES
    for group in groups:
        # (the body's separator between messages counts too)
        group_size = sum(_size(message) + len(", ") for message in group)
        if current and size + group_size > MAX_BATCH_BYTES:
            result.append(current)
            current, size = [], ENVELOPE_BYTES
        current.extend(group)
        size += group_size
    if current:
        result.append(current)
    return result


def sync(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    destination: Destination,
    sender: Sender | None,
    *,
    dry_run: bool = False,
) -> SyncReport:
    """Deliver everything the destination is owed at the newest snapshot hour."""
    ensure_state_tables(con)
    ensure_audience_hours(con)
    ensure_trait_hours(con)
    report = SyncReport()
    hour = newest_hour(con, catalog, destination)
    items = plan(con, catalog, destination, hour)
    report.snapshot_hour, report.items = hour, len(items)
    report.silent_items = sum(1 for item in items if not item.messages)
    owner = {m["messageId"]: item for item in items for m in item.messages}
    messages = [m for item in items for m in item.messages]
    report.messages = len(messages)
    groups = [[m for m in item.messages if _size(m) <= MAX_MESSAGE_BYTES] for item in items]
    sendable = [message for group in groups for message in group]
    oversized = [m for m in messages if _size(m) > MAX_MESSAGE_BYTES]
    report.oversized = len(oversized)
    if dry_run:
        report.planned = sendable
        return report
    record_synced_hour(con, destination.name, hour)
    pending = {id(item): len(item.messages) for item in items}
    # Items with no message (their calls are not wanted) are settled at once.
    _commit(con, destination, hour, [i for i in items if not i.messages], [], None, 0)
    report.committed_items += report.silent_items
    if oversized:
        outcome = Outcome(False, None, f"message over {MAX_MESSAGE_BYTES} bytes: not sent", 0)
        _commit(con, destination, hour, [], oversized, outcome, 0, status="oversized")
    for number, batch in enumerate(batches_of(groups), start=1):
        report.batches += 1
        sending = {id(owner[m["messageId"]]): owner[m["messageId"]] for m in batch}
        _mark_in_flight(con, destination, list(sending.values()))
        try:
            outcome = sender.send(batch)
        except DestinationUnavailableError as error:
            failed = Outcome(False, None, str(error), error.attempts)
            _commit(con, destination, hour, [], batch, failed, number, status="failed")
            raise
        done = []
        if outcome.accepted:
            report.accepted += len(batch)
            for message in batch:
                item = owner[message["messageId"]]
                pending[id(item)] -= 1
                if pending[id(item)] == 0:
                    done.append(item)
        else:
            report.rejected += len(batch)
        _commit(con, destination, hour, done, batch, outcome, number)
        report.committed_items += len(done)
    # (what was not accepted stays in flight, owed again)
    return report


def _mark_in_flight(
    con: duckdb.DuckDBPyConnection, destination: Destination, items: list[Item]
) -> None:
    """Record `items` as sent but not confirmed (their messages, with those still unconfirmed
    in calls they no longer go in, and the hour they were made for), before their messages
    leave."""
    keys = pa.Table.from_pylist(
        [{"destination": destination.name, "kind": item.kind, "name": item.name,
          "entity_id": item.entity_id, "snapshot_hour": item.message_hour,
          "sent": json.dumps(item.messages + item.unconfirmed), "entity_type": item.entity_type,
          "version": item.version}
         for item in items],
        schema=IN_FLIGHT_SCHEMA,
    )  # fmt: skip
    with transaction(con):
        con.register("sending_items", keys)
        con.execute(
            f"DELETE FROM destination_in_flight AS f USING sending_items AS i WHERE {_SAME_KEY}"
        )
        con.execute("INSERT INTO destination_in_flight BY NAME SELECT * FROM sending_items")
        con.unregister("sending_items")


def _commit(
    con: duckdb.DuckDBPyConnection,
    destination: Destination,
    hour: datetime,
    items: list[Item],
    batch: list[dict],
    outcome: Outcome | None,
    number: int,
    status: str | None = None,
) -> None:
    """In one transaction: log the batch's messages and store the items' accepted state."""
    if not items and not batch:
        return
    # (an exit stays as a row without value, keeping the key's count of changes)
    states = pa.Table.from_pylist(
        [{"destination": destination.name, "kind": item.kind, "name": item.name,
          "entity_type": item.entity_type, "entity_id": item.entity_id,
          "value": None if item.value is None else json.dumps(item.value, sort_keys=True),
          "calls": json.dumps(sorted(item.holds_calls)), "version": item.version,
          "unconfirmed": json.dumps(item.unconfirmed) if item.unconfirmed else None,
          "left_values": json.dumps(item.left, sort_keys=True)}
         for item in items],
        schema=STATE_SCHEMA,
    )  # fmt: skip
    sent_at = datetime.now(UTC).replace(tzinfo=None)
    logs = pa.Table.from_pylist(
        [{"message_id": m["messageId"], "call": m["type"],
          "entity_id": m.get("groupId") or m.get("userId") or ""} for m in batch],
        schema=LOG_SCHEMA,
    )  # fmt: skip
    outcome = outcome or Outcome(True, None, "", 0)
    with transaction(con):
        con.register("settled_items", states)
        for table in ("destination_state", "destination_in_flight"):
            con.execute(f"DELETE FROM {table} AS f USING settled_items AS i WHERE {_SAME_KEY}")
        con.execute(
            "INSERT INTO destination_state SELECT destination, kind, name, entity_type, "
            "entity_id, value::JSON, $h, calls, version, unconfirmed, left_values "
            "FROM settled_items",
            {"h": hour},
        )
        con.register("sent_messages", logs)
        con.execute(
            "INSERT INTO delivery_log SELECT $d, message_id, call, entity_id, $h, $b, $s, $st, "
            "$code, $r, $a FROM sent_messages",
            {"d": destination.name, "h": hour, "b": number, "s": sent_at,
             "st": status or ("accepted" if outcome.accepted else "rejected"),
             "code": outcome.code, "r": outcome.response, "a": outcome.attempts},
        )  # fmt: skip
        con.unregister("settled_items")
        con.unregister("sent_messages")
