"""What a destination is owed: the difference between the newest snapshot and the state it
has accepted, as items (one change of one entity) each with its Segment messages.

- an account enters (exits) an account audience: group `{audience: true (false)}`, with the
  destination's output columns (those with a value) on entering;
- a user of such an account, or of a user audience, enters (exits) it: identify
  `{audience: true (false)}` and track `Audience Entered` (`Audience Exited`);
- an account trait changes: group `{trait: value}`, and for each user of the account, identify
  `{trait: value}` and track `Trait Computed` (a user of several accounts gets the value of the
  first of them, by account id, that has one);
- a user trait changes: identify `{trait: value}` and track `Trait Computed`.

Values JSON cannot carry (NaN, infinities) travel as null: a trait with such a value has none.

Only the calls a destination asks for are built; a value it holds goes again in the calls it
asks for that have not carried it (added since, or removed and added again). Message ids are
UUIDs derived from the destination, audience or trait, entity, transition, value, snapshot
hour, call and user (and, from a key's second change on, which change it is), so a re-send is
a duplicate the receiver drops and a new change never is.
"""

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
from ibis import Deferred, _

from account_hierarchy.activation.state import (
    NOTHING,
    UNKNOWN,
    Held,
    InFlight,
    held_state,
    in_flight_changes,
    synced_hour,
)
from account_hierarchy.catalog.destination_models import CALLS, Destination
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.json_text import fetch_rows, parse_json
from account_hierarchy.output import plain
from account_hierarchy.traits.compute import computed_by, newest_trait_hours
from account_hierarchy.warehouse import table_names

NAMESPACE = uuid.UUID("6f1c1e5e-4a55-4d0e-9d0c-6163636f756e")
LIBRARY = {"name": "account_hierarchy", "version": "0.1.0"}
ACCOUNT_SENDER = "account_hierarchy"  # the anonymousId of group calls about whole accounts
# Item kinds: audience, audience_user (a user of an account audience's member), trait and
# trait_user (a user of an account with a synced account trait).
TRAIT_KINDS = ("trait", "trait_user")
# The kind of a user's key under which an audience or trait moved to the other entity writes the
# same identify trait.
MOVED_KIND = {"audience": "audience_user", "audience_user": "audience", "trait": "trait_user",
              "trait_user": "trait"}  # fmt: skip


@dataclass
class Item:
    """One change owed to a destination, and the messages that deliver it."""

    kind: str
    name: str
    entity_type: str
    entity_id: str
    transition: str  # entered, exited or changed
    value: Any
    messages: list[dict] = field(default_factory=list)
    message_hour: datetime | None = None  # the snapshot hour its messages are made for
    only_calls: set[str] = field(default_factory=lambda: set(CALLS))  # the calls it is sent in
    is_change: bool = True  # a change of the key's value (else a held value owed in some calls)
    holds_calls: set[str] = field(default_factory=set)  # the calls holding it once accepted
    # what the calls not holding it hold once it is accepted (call -> value, JSON text): off
    # when the value changed, they keep the one they had
    left: dict[str, str] = field(default_factory=dict)
    version: int = 1  # which change of its key it is (1 for the first)
    # messages sent without confirmation in calls that will not hold it (a call removed while
    # they were in flight), kept to go again as they went if that call comes back
    unconfirmed: list[dict] = field(default_factory=list)


class NothingToSyncError(LookupError):
    """The snapshots a destination needs have not been materialized yet."""


def newest_hour(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, destination: Destination
) -> datetime:
    """The newest snapshot hour every input of the destination was built for (an input built
    for later hours but not for that one does not count as empty there); never one older than
    the snapshot the destination already holds (going back would send it old changes)."""
    inputs = input_hours(con, catalog, destination)
    hours = {name: _newest(built) for name, built in inputs.items()}
    # (a trait table without rows, no account having sent a group call yet, say, holds
    # nothing to send and waits for nothing, unless nothing else has rows either)
    if any(hours.values()):
        hours = {name: hour for name, hour in hours.items()
                 if hour is not None or not name.endswith(" traits")}  # fmt: skip
    if not hours or None in hours.values():
        missing = [name for name, hour in hours.items() if hour is None]
        # (name what it waits for, unless that is every input: a destination added before
        # anything was built)
        what = (
            "its audiences and traits have"
            if not missing or len(missing) == len(hours)
            else f"{', '.join(missing)} {'has' if len(missing) == 1 else 'have'}"
        )
        raise NothingToSyncError(
            f"destination {destination.name}: {what} not been materialized yet"
        )
    reached = min(hours.values())
    common = ibis.intersect(*(inputs[name] for name in hours))
    newest = _newest(common.filter(common.snapshot_hour <= reached))
    held = synced_hour(con, destination.name)
    if newest is not None and (held is None or newest >= held):
        return newest
    if behind := [name for name, hour in hours.items() if held is not None and hour < held]:
        problem = f"{', '.join(behind)} reach only {reached:%Y-%m-%d %H:00}"
    else:
        problem = f"no hour up to {reached:%Y-%m-%d %H:00} has all of its inputs"
    since, until = "", ""
    if held is not None:
        since = f"it holds the snapshot of {held:%Y-%m-%d %H:00}, and "
        until = f" up to {held:%Y-%m-%d %H:00}"
    raise NothingToSyncError(
        f"destination {destination.name}: {since}{problem}: materialize them{until} for the "
        "same hours (an older snapshot would send it old changes)"
    )


def _newest(hours: ir.Table) -> datetime | None:
    return hours.snapshot_hour.max().to_pyarrow().as_py()


def input_hours(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, destination: Destination
) -> dict[str, ir.Table]:
    """Each input of the destination by name (its audiences, the trait table of each entity
    it takes traits of, each of those traits), with the snapshot hours it was built for."""
    db = ibis.duckdb.from_connection(con)
    existing = table_names(con)

    def hours_of(table: str, *conditions: ir.BooleanValue | Deferred) -> ir.Table:
        if table in existing:
            rows = db.table(table)
            rows = rows.filter(*conditions) if conditions else rows
        else:
            rows = db.sql("SELECT CAST(NULL AS TIMESTAMP) AS snapshot_hour WHERE false")
        # (cast to one type: the tables differ in whether the column may hold nulls)
        return rows.select(snapshot_hour=rows.snapshot_hour.cast("timestamp"))

    inputs = {}
    for audience in destination.audiences:
        # (an audience can be empty at its newest hours, which have no membership rows: the
        # hours it was evaluated for are in `audience_hours`; the memberships cover hours
        # built before that table was kept)
        evaluated = [hours_of(table, _.audience == audience)
                     for table in ("audience_hours", "audience_memberships")]  # fmt: skip
        inputs[f"audience {audience}"] = ibis.union(*evaluated)
    entities = sorted(_trait_entities(catalog, destination))
    inputs |= {f"{entity} traits": hours_of(f"{entity}_traits") for entity in entities}
    # (each trait's hours computed by its definition, for the entities whose trait tables
    # were built since `trait_hours` was kept)
    tracked = {entity for entity, _trait in newest_trait_hours(con, catalog)}
    current = catalog.trait_definitions().values()
    for entity in (entity for entity in entities if entity in tracked):
        for trait in destination.traits:
            if trait in catalog.trait_columns(entity):
                inputs[f"{entity} trait {trait}"] = hours_of(
                    "trait_hours", _.entity == entity, _.trait == trait,
                    computed_by(db.table("trait_hours"), current),
                )  # fmt: skip
    return inputs


def _trait_entities(catalog: Catalog, destination: Destination) -> set[str]:
    return {entity for entity in ("account", "user") for trait in destination.traits
            if trait in catalog.trait_columns(entity)}  # fmt: skip


def message_id(*parts: object) -> str:
    """A UUID determined by its parts."""
    return str(uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts)))


def plan(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, destination: Destination, hour: datetime
) -> list[Item]:
    """Every item owed to the destination at snapshot `hour`: each change, in every call it
    wants, and each value it holds that some of the calls it wants do not carry yet (calls
    added, or removed and added again), in those calls only."""
    held = held_state(con, destination.name)
    held_types = {(kind, name, entity_id): type_ for kind, name, type_, entity_id in held}
    in_flight = {
        _typed(catalog, key, held_types): flight
        for key, flight in in_flight_changes(con, destination.name).items()
    }
    desired = _desired(con, catalog, destination, hour)
    wanted = set(destination.calls)
    # (a key holds the entity type it was sent as, which decides the call of what the
    # destination should no longer hold, even for an audience or trait since removed from the
    # definitions; an account and a user of one id are two keys)
    items = []
    # (what the destination should no longer hold goes first: a trait or audience since moved
    # to the other entity writes the same identify trait under another key, which its
    # retraction must not overwrite)
    keys = desired.keys() | held.keys() | in_flight.keys()
    for key in sorted(keys, key=lambda key: (desired.get(key) is not None, key)):
        want, has = desired.get(key), held.get(key, NOTHING)
        missing = {call for call in wanted if has.held_in(call) != want}
        if key not in in_flight and has.value == want and not missing:
            continue
        if want is None:
            transition = "changed" if key[0] in TRAIT_KINDS else "exited"
            item = Item(*key, transition, None)
        else:
            transition = "changed" if key[0] in TRAIT_KINDS else "entered"
            item = Item(*key, transition, parse_json(want))
        unsure = _unsure_calls(has, in_flight.get(key))
        if has.value == want:  # (the value it holds, owed in the calls missing it)
            item.is_change, item.only_calls, item.holds_calls = False, missing, has.calls | wanted
            item.left = _left(has, item.holds_calls, unsure)
            item.version = max(has.version, 1)
        else:
            _change(item, has, want, wanted, unsure)
            item.version = _next_version(key, held, in_flight)
        items.append(item)
    items += _overwritten(items, desired, held, in_flight, wanted)
    outputs = _output_columns(con, catalog, destination, hour)
    for item in items:
        _prepare(destination, item, outputs, hour)
        key = (item.kind, item.name, item.entity_type, item.entity_id)
        # (sent without confirmation: what goes again goes as it went, ids and all)
        previous = {}
        if key in in_flight:
            previous = _sent_messages(destination, item, outputs, in_flight[key])
            if not item.is_change and not _resent(item, previous):
                # (a held value whose unconfirmed messages were other: the calls they went in
                # may hold anything, so it goes in them, as a change of its own: under the ids
                # it first went with, a destination that took the other change would drop it)
                has = held.get(key, NOTHING)
                _change(item, has, desired.get(key), wanted, _unsure_calls(has, in_flight[key]))
                item.version = _next_version(key, held, in_flight)
                _prepare(destination, item, outputs, hour)
            elif (
                item.is_change
                and any(_content(m) in previous for m in item.messages)
                and in_flight[key].version > held.get(key, NOTHING).version
            ):
                # (the change in flight going again, as it went and in any call added since:
                # once accepted, it is the change it was, not one more, so later changes get
                # the ids they would have; one sent before versions were kept is one more.
                # A message's id names its content: a new one cannot take a sent one's id)
                item.version = in_flight[key].version
        unconfirmed = held.get(key, NOTHING).unconfirmed
        if unconfirmed:  # (sent in calls since off: the same content goes again as it went)
            previous = {_content(m): m for m in json.loads(unconfirmed)} | previous
        item.messages = [previous.get(_content(m), m) for m in item.messages]
        item.unconfirmed = [m for m in previous.values() if m["type"] not in item.holds_calls]
    # (an item owed only in calls none of whose messages are about it is no item)
    return [item for item in items if item.messages or item.is_change]


def _resent(item: Item, previous: dict[str, dict]) -> bool:
    """Whether each of the item's messages went before, unconfirmed (`previous`, by content)."""
    return bool(item.messages) and all(_content(m) in previous for m in item.messages)


def _overwritten(
    items: list[Item],
    desired: dict[tuple, str],
    held: dict[tuple, Held],
    in_flight: dict[tuple, InFlight],
    wanted: set[str],
) -> list[Item]:
    """The users' values that a retraction owed (of an audience or trait since moved to the
    other entity: the same identify trait under the other key) overwrites, when not owed
    themselves: a retraction the destination refused, then sent again after the new value was
    accepted, would otherwise leave it holding the retraction. Each goes again after it, in the
    user's calls the retraction goes in (identify, track), as a change of its own (under ids
    never used, which no receiver drops)."""
    owed = {(item.kind, item.name, item.entity_type, item.entity_id) for item in items}
    again = []
    for item in items:
        key = (item.kind, item.name, item.entity_type, item.entity_id)
        if desired.get(key) is not None or item.entity_type != "user":
            continue
        overwritten = item.only_calls & wanted & {"identify", "track"}
        if not overwritten:
            continue
        other = (MOVED_KIND[item.kind], item.name, "user", item.entity_id)
        want = desired.get(other)
        if want is None or other in owed:
            continue
        has = held.get(other, NOTHING)
        value = Item(*other, "changed" if other[0] in TRAIT_KINDS else "entered", parse_json(want))
        _change(value, has, want, wanted, _unsure_calls(has, None) | overwritten)
        value.version = _next_version(other, held, in_flight)
        again.append(value)
        owed.add(other)
    return again


def _change(item: Item, has: Held, want: str | None, wanted: set[str], unsure: set[str]) -> None:
    """Make `item` a change of its key to `want`: sent in the calls that do not hold `want`
    already (one off when the change was undone may) and in the `unsure` ones; once accepted,
    held by every call wanted and by the calls off known to hold `want`, the other calls off
    keeping what they hold."""
    item.is_change = True
    item.only_calls = {call for call in CALLS if call in unsure or has.held_in(call) != want}
    item.holds_calls = wanted | {call for call in CALLS
                                 if call not in unsure and has.held_in(call) == want}  # fmt: skip
    item.left = _left(has, item.holds_calls, unsure)


def _left(has: Held, holds: set[str], unsure: set[str]) -> dict[str, str]:
    """What the calls not in `holds` hold (those holding nothing left out; the `unsure` ones
    what is not known)."""
    left = {}
    for call in sorted(set(CALLS) - holds):
        value = UNKNOWN if call in unsure else has.held_in(call)
        if value is not None:
            left[call] = value
    return left


def _unsure_calls(has: Held, flight: InFlight | None) -> set[str]:
    """The calls in which messages about the key went without confirmation (every call for
    messages recorded before they were kept whole)."""
    messages = json.loads(has.unconfirmed or "[]")
    if flight:
        if not flight.sent:
            return set(CALLS)
        messages += json.loads(flight.sent)
    if not all(isinstance(message, dict) and "type" in message for message in messages):
        return set(CALLS)
    return {message["type"] for message in messages}


def _typed(
    catalog: Catalog, key: tuple[str, str, str | None, str], held_types: dict[tuple, str]
) -> tuple[str, str, str, str]:
    """A change's key with its entity type; a change sent before the type was recorded gets the
    one its key's state holds, else the definitions' (a user for `_user` kinds)."""
    kind, name, entity_type, entity_id = key
    if entity_type is None:
        entity_type = held_types.get((kind, name, entity_id))
    if entity_type is None:
        if kind in ("audience_user", "trait_user"):
            entity_type = "user"
        elif kind == "audience":
            try:
                entity_type = catalog.audience(name).entity
            except KeyError:  # (an audience since removed from the definitions)
                entity_type = "account"
        else:
            entity_type = "account" if name in catalog.trait_columns("account") else "user"
    return kind, name, entity_type, entity_id


def _next_version(
    key: tuple[str, str, str, str], held: dict[tuple, Held], in_flight: dict[tuple, InFlight]
) -> int:
    """The number of a new change of `key`: after every change the destination accepted and
    the one it may have (unconfirmed), so that its ids were never used."""
    flight = in_flight.get(key)
    return max(held.get(key, NOTHING).version, flight.version if flight else 0) + 1


def _prepare(
    destination: Destination, item: Item, outputs: dict[str, dict], hour: datetime
) -> None:
    """Make the item's messages for snapshot `hour`."""
    item.message_hour = hour
    item.messages = _messages(destination, item, outputs)


def _content(message: dict) -> str:
    """What a message says, its id, time and event name aside (JSON text): a track's
    properties say which change it is, so one sent under an event name since renamed is the
    same message."""
    return json.dumps(
        {k: v for k, v in message.items() if k not in ("messageId", "timestamp", "event")},
        sort_keys=True,
    )


def _sent_messages(
    destination: Destination, item: Item, outputs: dict[str, dict], flight: InFlight
) -> dict[str, dict]:
    """The item's unconfirmed messages by content: as recorded, or, recorded before the
    messages were kept whole, as made again for their snapshot hour (and change)."""
    recorded = json.loads(flight.sent) if flight.sent else []
    if all("messageId" in message for message in recorded):
        return {_content(message): message for message in recorded}
    contents = {_content(message) for message in recorded}
    again = replace(item, messages=[], version=flight.version or item.version)
    _prepare(destination, again, outputs, flight.sent_for)
    return {_content(m): m for m in again.messages if _content(m) in contents}


def _desired(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, destination: Destination, hour: datetime
) -> dict[tuple, str]:
    """(kind, name, entity type, entity id) -> value (JSON text) the destination should hold at
    `hour`."""
    desired: dict[tuple, str] = {}
    true = json.dumps(True)
    for audience in destination.audiences:
        members = con.execute(
            "SELECT entity_id FROM audience_memberships WHERE audience = $a AND snapshot_hour = $h",
            {"a": audience, "h": hour},
        ).fetchall()
        entity = catalog.audience(audience).entity
        for (entity_id,) in members:
            desired[("audience", audience, entity, entity_id)] = true
        if entity == "account":
            users = con.execute(
                "SELECT DISTINCT m.user_id FROM account_memberships AS m JOIN "
                "audience_memberships AS a ON a.entity_id = m.account_id "
                "AND a.snapshot_hour = m.snapshot_hour "
                "WHERE a.audience = $a AND m.snapshot_hour = $h",
                {"a": audience, "h": hour},
            ).fetchall()
            for (user_id,) in users:
                desired[("audience_user", audience, "user", user_id)] = true
    for entity in ("account", "user"):
        for trait in destination.traits:
            if trait not in catalog.trait_columns(entity):
                continue
            values = _values(
                con,
                f'SELECT {entity}_id, "{trait}" FROM {entity}_traits '
                f'WHERE snapshot_hour = $h AND "{trait}" IS NOT NULL',
                {"h": hour},
            )
            keyed = [(("trait", trait, entity, entity_id), value) for entity_id, value in values]
            if entity == "account":
                keyed += [(("trait_user", trait, "user", user_id), value) for user_id, value in
                          _users_account_values(con, trait, hour)]  # fmt: skip
            for key, value in keyed:
                if value is not None:
                    desired[key] = json.dumps(value, sort_keys=True)
    return desired


def _users_account_values(
    con: duckdb.DuckDBPyConnection, trait: str, hour: datetime
) -> list[tuple[str, Any]]:
    """(user id, the account trait's value) for every user of an account with a value: for a
    user of several accounts, the value of the first of them by account id (a value JSON
    cannot carry, NaN say, is none)."""
    rows = _values(
        con,
        f'SELECT m.user_id, t."{trait}" '
        "FROM account_memberships AS m JOIN account_traits AS t "
        "ON t.account_id = m.account_id AND t.snapshot_hour = m.snapshot_hour "
        f'WHERE m.snapshot_hour = $h AND t."{trait}" IS NOT NULL '
        "ORDER BY m.user_id, m.account_id",
        {"h": hour},
    )
    values: dict[str, Any] = {}
    for user_id, value in rows:
        if user_id not in values and value is not None:
            values[user_id] = value
    return list(values.items())


def _values(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[tuple[str, Any]]:
    """(id, value) rows of `sql` (an id column, then a trait column), each value as plain
    JSON-able Python, as the diffs have it (`output.plain`: times as ISO text, a JSON column's
    values as the values it holds; None where nothing JSON can carry is left)."""
    return [(entity_id, plain(value)) for entity_id, value in fetch_rows(con.execute(sql, params))]


def _output_columns(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, destination: Destination, hour: datetime
) -> dict[str, dict]:
    """Account id -> the destination's output columns (custom or computed account traits)."""
    if not destination.output_columns:
        return {}
    computed = [c for c in destination.output_columns if c in catalog.trait_columns("account")]
    custom = [c for c in destination.output_columns if c not in computed]
    rows: dict[str, dict] = {}
    for account_id, traits in con.execute(
        "SELECT account_id, traits FROM accounts WHERE snapshot_hour = $h", {"h": hour}
    ).fetchall():
        values = parse_json(traits)
        rows[account_id] = {c: plain(values.get(c)) for c in custom}
    for column in computed:
        for account_id, value in _values(
            con,
            f'SELECT account_id, "{column}" FROM account_traits WHERE snapshot_hour = $h',
            {"h": hour},
        ):
            rows.setdefault(account_id, {})[column] = value
    return rows


def _messages(destination: Destination, item: Item, outputs: dict[str, dict]) -> list[dict]:
    calls = set(destination.calls) & item.only_calls
    names = destination.event_names
    hour = item.message_hour
    as_of = (hour + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    flag = item.transition != "exited"
    value = item.value if item.kind in TRAIT_KINDS else flag

    def message(call: str, body: dict) -> dict:
        # (the id names the change, the message's own content and the snapshot hour, and from
        # a key's second change on which change it is: entering again within the hour is new)
        again = (f"change {item.version}",) if item.version > 1 else ()
        identity = message_id(destination.name, item.kind, item.name, item.entity_id,
                              item.transition, call, json.dumps(body, sort_keys=True),
                              hour.isoformat(), *again)  # fmt: skip
        return {"messageId": identity, "type": call, "timestamp": as_of,
                "context": {"library": LIBRARY}, **body}  # fmt: skip

    messages = []
    if item.kind == "audience" and item.entity_type == "account":
        if "group" in calls:
            columns = outputs.get(item.entity_id, {}) if flag else {}
            traits = {item.name: flag, **{k: v for k, v in columns.items() if v is not None}}
            messages.append(
                message(
                    "group",
                    {"anonymousId": ACCOUNT_SENDER, "groupId": item.entity_id, "traits": traits},
                )
            )
    elif item.kind == "trait" and item.entity_type == "account":
        if "group" in calls:
            messages.append(message("group", {"anonymousId": ACCOUNT_SENDER,
                                              "groupId": item.entity_id,
                                              "traits": {item.name: value}}))  # fmt: skip
    else:  # a user: of an account audience, of a user audience, or a user trait
        if "identify" in calls:
            messages.append(message("identify", {"userId": item.entity_id,
                                                 "traits": {item.name: value}}))  # fmt: skip
        if "track" in calls:
            if item.kind in TRAIT_KINDS:
                event, key = names.trait_computed, "trait_key"
            else:
                event, key = (names.entered if flag else names.exited), "audience_key"
            properties = {key: item.name, item.name: value}
            messages.append(message("track", {"userId": item.entity_id, "event": event,
                                              "properties": properties}))  # fmt: skip
    return messages
