"""Hourly trait tiles: what one hour of a user's events contributes to each computed trait, so
that a snapshot rolls its windows up from tiles instead of re-reading every event's JSON.

`trait_tiles` holds a row per (`tile_hour`, `user_id`, `context_group_id`) with each trait's
partial aggregate over those events (type, name and conditions applied, window not):

- counters and unique users: the number of matching events;
- sums, averages, minimums, maximums: the sum, count, minimum or maximum of the numbers;
- first / last values: the value of the earliest / latest event that has it, with its
  timestamp and messageId (the tie-breaker).

The `performed` conditions of audiences are user event counters too (`performed_counter`)
and have tiles of their own.

`trait_value_tiles` counts, the same way, each value of the property of a value trait (most
frequent value, unique list, unique list count): a row per selection (what the trait counts:
event, conditions, property; traits counting the same values share it), key and value.

A snapshot at hour `h` keeps the tiles of hours before `as_of` and inside each trait's window,
attributes them to entities exactly as events are (`compile.attribute`), and combines the
partials. This equals the direct computation when a window is a whole number of hours; traits
with other windows (`90 minutes`) are computed from the events (`tileable`).

Tiles are a cache of `raw_events` kept by `refresh_tiles` (see `tile_cache.py`): an hour is
rebuilt when its events changed (their count or a checksum of their messageIds) and all hours
are rebuilt when the tiled definitions change (a fingerprint of the compiled tile query).
"""

import functools
import hashlib
from dataclasses import dataclass
from datetime import timedelta

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from account_hierarchy.catalog.audience_checks import walk
from account_hierarchy.catalog.audience_models import Audience, Performed
from account_hierarchy.catalog.models import (
    Aggregation,
    ComputedTrait,
    EventCounter,
    FirstValue,
    LastValue,
    MostFrequent,
    UniqueList,
    UniqueListCount,
    UniqueUsers,
)
from account_hierarchy.tile_cache import refresh_tile_family, stale_events
from account_hierarchy.traits.compile import (
    in_window,
    property_column,
    selects,
    timestamp,
    with_properties,
)

TILE_KEYS = ("tile_hour", "user_id", "context_group_id")
TILES, VALUE_TILES, TILE_HOURS = "trait_tiles", "trait_value_tiles", "trait_tile_hours"


ValueTrait = MostFrequent | UniqueList | UniqueListCount


def is_value_trait(trait: ComputedTrait) -> bool:
    """Whether the trait rolls up from value tiles (it needs every distinct value)."""
    return isinstance(trait, ValueTrait)


def tileable(trait: ComputedTrait) -> bool:
    """Whether tiles give the trait exactly: its window is all time or whole hours."""
    length = trait.window_length
    return length is None or length % timedelta(hours=1) == timedelta(0)


def performed_counter(condition: Performed) -> EventCounter:
    """The user event counter an audience's `performed` condition counts with (named after
    what it counts, so that equal conditions share their tiles)."""
    counted = condition.model_dump_json(include={"performed", "event_type", "where", "window"})
    return EventCounter(
        name=f"performed_{hashlib.sha1(counted.encode()).hexdigest()[:12]}", entity="user",
        type="event_counter", event=condition.performed, event_type=condition.event_type,
        where=condition.where, window=condition.window,
    )  # fmt: skip


def performed_counters(audiences: list[Audience]) -> list[EventCounter]:
    """The counters of every `performed` condition of the audiences, once each."""
    counters = {}
    for audience in audiences:
        for condition, _ in walk(audience.where, audience.entity):
            if isinstance(condition, Performed):
                counter = performed_counter(condition)
                counters[counter.name] = counter
    return list(counters.values())


def tile_column(trait: ComputedTrait, part: str) -> str:
    """The column of `trait_tiles` holding one of the trait's partial aggregates."""
    return f"{trait.entity}__{trait.name}__{part}"


def tile_rows(events: ir.Table, traits: list[ComputedTrait]) -> ir.Table:
    """One row per (hour, user, context account) of `events`, with every trait's partials."""
    events = with_properties(events, traits)
    order = ibis.struct({"timestamp": events.timestamp, "message_id": events.message_id})
    columns = {}
    for trait in traits:
        where = selects(events, trait)
        if isinstance(trait, EventCounter | UniqueUsers):
            columns[tile_column(trait, "n")] = events.message_id.count(where=where)
        elif isinstance(trait, Aggregation):
            number = events[property_column(trait.property, "number")]
            where &= number.notnull()
            if trait.function in ("sum", "avg"):
                columns[tile_column(trait, "sum")] = number.sum(where=where)
                columns[tile_column(trait, "n")] = number.count(where=where)
            else:
                reduce = number.min if trait.function == "min" else number.max
                columns[tile_column(trait, trait.function)] = reduce(where=where)
        elif isinstance(trait, FirstValue | LastValue):
            text = events[property_column(trait.property, "text")]
            where &= events[property_column(trait.property, "present")]
            last = isinstance(trait, LastValue)
            for part, column in (("value", text), ("at", events.timestamp),
                                 ("id", events.message_id)):  # fmt: skip
                columns[tile_column(trait, part)] = pick(column, order, last=last, where=where)
    return events.group_by(
        tile_hour=events.event_hour,
        user_id=events.user_id,
        context_group_id=events.context_group_id,
    ).aggregate(**columns)


def pick(
    value: ir.Column, order: ir.StructValue, *, last: bool, where: ir.BooleanValue
) -> ir.Scalar:
    """The value of the row with the smallest `order` (with `last`, the greatest) among those
    `where` holds: DuckDB's `arg_min` / `arg_max`. Ibis spells `argmin` as an ordered `first`,
    which DuckDB runs by sorting every group's rows (25% slower here)."""
    function = _builtin("arg_max" if last else "arg_min", value.type(), order.type())
    return function(value, order, where=where)


@functools.cache
def _builtin(name: str, value_type: dt.DataType, order_type: dt.DataType):
    def builtin(value, order): ...

    signature = ((value_type, order_type), value_type)
    return ibis.udf.agg.builtin(builtin, name=name, signature=signature)


def value_selection(trait: ValueTrait) -> str:
    """The key of a value trait's rows in `trait_value_tiles`: what it counts (event, conditions
    and property), so that value traits counting the same values share their tiles."""
    counted = trait.model_dump_json(include={"event_type", "event", "where", "property"})
    return f"values_{hashlib.sha1(counted.encode()).hexdigest()[:12]}"


def value_tile_rows(events: ir.Table, traits: list[ValueTrait]) -> ir.Table:
    """Per (hour, user, context account), how often each value trait saw each value (once
    per `value_selection`)."""
    events = with_properties(events, traits)
    parts = []
    for trait in {value_selection(trait): trait for trait in traits}.values():
        text = events[property_column(trait.property, "text")]
        present = events[property_column(trait.property, "present")]
        parts.append(
            events.filter(selects(events, trait) & present)
            .group_by(
                selection=ibis.literal(value_selection(trait)),
                tile_hour=events.event_hour,
                user_id=events.user_id,
                context_group_id=events.context_group_id,
                value=text,
            )
            .aggregate(times=ibis._.count())
        )
    return ibis.union(*parts)


def rollup(tiles: ir.Table, traits: list[ComputedTrait], as_of) -> ir.Table | None:
    """One row per entity (`entity_id` of the attributed tiles) with a column per trait, from
    the tiles before `as_of` (most-frequent traits excepted)."""
    columns = {}
    for trait in traits:
        where = in_window(tiles.tile_hour, trait, as_of)

        def part(name: str, t: ComputedTrait = trait) -> ir.Column:
            return tiles[tile_column(t, name)]

        if isinstance(trait, EventCounter):
            columns[trait.name] = _total(part("n"), where)
        elif isinstance(trait, UniqueUsers):
            columns[trait.name] = tiles.user_id.nunique(where=where & (part("n") > 0))
        elif isinstance(trait, Aggregation):
            if trait.function == "sum":
                columns[trait.name] = part("sum").sum(where=where)
            elif trait.function == "avg":
                count = _total(part("n"), where)
                columns[trait.name] = part("sum").sum(where=where) / count.nullif(0)
            else:
                values = part(trait.function)
                reduce = values.min if trait.function == "min" else values.max
                columns[trait.name] = reduce(where=where)
        elif isinstance(trait, FirstValue | LastValue):
            order = ibis.struct({"at": part("at"), "id": part("id")})
            columns[trait.name] = pick(
                part("value"), order, last=isinstance(trait, LastValue),
                where=where & part("at").notnull(),
            )  # fmt: skip
    return tiles.group_by("entity_id").aggregate(**columns) if columns else None


def _total(counts: ir.IntegerColumn, where: ir.BooleanValue) -> ir.IntegerScalar:
    """The sum of counts as a BIGINT. DuckDB sums integers to HUGEINT while Ibis types the sum
    as int64, so the cast back is spelled through a decimal, which Ibis does not drop; it is
    applied to each sum, not to each count."""
    return counts.sum(where=where).cast("decimal(38, 0)").cast("int64")


def rollup_values(value_tiles: ir.Table, traits: list[ValueTrait], as_of) -> ir.Table:
    """One row per entity with a column per value trait (most frequent value, ties: the
    smallest; the sorted distinct values; or how many there are); the traits share their
    `value_selection` and window, so one pass serves them all."""
    kept = value_tiles.filter(in_window(value_tiles.tile_hour, traits[0], as_of))
    counted = kept.group_by(["entity_id", "value"]).aggregate(
        times=_total(kept.times, ibis.literal(True))
    )
    rank = ibis.struct({"times": -counted.times, "value": counted.value})
    columns = {}
    for trait in traits:
        if isinstance(trait, UniqueList):
            columns[trait.name] = counted.value.collect().sort()
        elif isinstance(trait, UniqueListCount):
            columns[trait.name] = counted.value.count()
        else:
            columns[trait.name] = counted.value.argmin(rank)
    return counted.group_by("entity_id").aggregate(**columns)


def tiles_before(table: ir.Table, as_of, trait: ValueTrait | None = None) -> ir.Table:
    """The tiles of hours before `as_of` (of one value trait, for value tiles)."""
    kept = table.filter(table.tile_hour < timestamp(as_of))
    return kept.filter(kept.selection == value_selection(trait)) if trait else kept


@dataclass(frozen=True)
class TileRefresh:
    """What `refresh_tiles` did."""

    hours_rebuilt: int
    """Hours whose tiles were (re)built."""
    tiles: int
    """Rows of `trait_tiles` after the refresh."""


def refresh_tiles(con: duckdb.DuckDBPyConnection, traits: list[ComputedTrait]) -> TileRefresh:
    """Bring the tiles of `traits` (all tileable) up to date with `raw_events`."""
    backend = ibis.duckdb.from_connection(con)
    events = stale_events(backend)
    events = events.filter(events.user_id.notnull())
    plain = [t for t in traits if not is_value_trait(t)]
    valued = [t for t in traits if is_value_trait(t)]
    queries = {
        TILES: backend.compile(tile_rows(events, plain)),
        VALUE_TILES: backend.compile(value_tile_rows(events, valued)) if valued else None,
    }
    rebuilt = refresh_tile_family(con, TILE_HOURS, queries)
    (rows,) = con.execute(f"SELECT count(*) FROM {TILES}").fetchone()
    return TileRefresh(hours_rebuilt=rebuilt, tiles=rows)
