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

`trait_day_tiles` and `trait_value_day_tiles` combine the hour tiles of each day the same way
(one row per day, user and context account; half as many rows), so that a window of days
reads one row per active day instead of one per active hour.

A snapshot at hour `h` (`as_of` = end of `h`) reads the day tiles of the days before `as_of`'s
day and the hour tiles of `as_of`'s day, plus, for a window starting after a day's first hour,
that day's hour tiles inside the window instead of its day tile (`tiles_as_of`,
`tile_in_window`). It attributes them to entities exactly as events are
(`compile.attribute`) and combines the partials (`rollup`, `rollup_values`). This equals the
direct computation when a window is a whole number of hours; traits with other windows
(`90 minutes`) are computed from the events (`tileable`).

Traits whose window is all time or whole days (`combines_by_day`) go one step further: the
snapshot hours of a day all have the same whole days inside such a window, so the day tiles
of those days are combined once per day into one row per user and context account (and
value), the day partials (`build_day_partials`), and each hour of the day rolls up from those
and its hour tiles.

Tiles are a cache of `raw_events` kept by `refresh_tiles` (see `tile_cache.py`): an hour is
rebuilt when its events changed (their count or a checksum of their contents) and all hours
are rebuilt when the tiled definitions change (a fingerprint of the compiled tile query); a
day is rebuilt when one of its hours is.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import ibis
import ibis.expr.types as ir
from ibis.expr.types.groupby import GroupedTable

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
from account_hierarchy.partitions import day_of
from account_hierarchy.tile_cache import (
    RAW_EVENT_HOURS,
    days_of,
    refresh_day_cache,
    refresh_tile_family,
    stale_days,
    stale_events,
    stale_versions,
)
from account_hierarchy.traits.compile import (
    property_column,
    selects,
    timestamp,
    window_interval,
    with_properties,
)

TILES, VALUE_TILES, TILE_HOURS = "trait_tiles", "trait_value_tiles", "trait_tile_hours"
DAY_TILES, DAY_VALUE_TILES = "trait_day_tiles", "trait_value_day_tiles"
DAY_PARTIALS, DAY_VALUE_PARTIALS = "trait_day_partials", "trait_value_day_partials"
PARTIALS_VERSION = "trait_day_partials_version"
TILE_DAYS = "trait_tile_days"


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
    columns, picked = {}, []
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
            row = first_or_last(trait, events.timestamp, events.message_id, text, where)
            picked.append((trait, row))
    grouped = events.group_by(
        tile_hour=events.event_hour,
        user_id=events.user_id,
        context_group_id=events.context_group_id,
    )
    return _aggregate(grouped, columns, picked)


def first_or_last(
    trait: FirstValue | LastValue,
    at: ir.TimestampValue,
    message_id: ir.StringValue,
    value: ir.StringValue,
    where: ir.BooleanValue,
) -> ir.StructScalar:
    """The `at`, `id` and `value` of the earliest row where `where` holds (the latest for a
    last value), by time then messageId: one min / max of structs, which DuckDB compares field
    by field (Ibis's `argmin` is an ordered `first`, which sorts every group's rows)."""
    row = ibis.struct({"at": at, "id": message_id, "value": value})
    return row.max(where=where) if isinstance(trait, LastValue) else row.min(where=where)


def _aggregate(
    grouped: GroupedTable, columns: dict[str, ir.Scalar], picked: list[tuple]
) -> ir.Table:
    """`grouped` aggregated to `columns` and to the parts (`value`, `at`, `id`) of each
    (first / last value trait, picked row) of `picked`."""
    rows = {tile_column(trait, "row"): row for trait, row in picked}
    table = grouped.aggregate(**columns, **rows)
    parts = {
        tile_column(trait, part): table[tile_column(trait, "row")][part]
        for trait, _ in picked
        for part in ("value", "at", "id")
    }
    kept = [name for name in table.columns if name not in rows]
    return table.select(*kept, **parts)


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


def rollup(
    tiles: ir.Table,
    traits: list[ComputedTrait],
    as_of: datetime | ir.TimestampValue,
    by: tuple[str, ...] = ("entity_id",),
) -> ir.Table | None:
    """One row per entity (`entity_id` of the attributed tiles of `tiles_as_of`; per value of
    the columns `by`) with a column per trait (value traits excepted)."""
    columns = {}
    for trait in traits:
        where = tile_in_window(tiles, trait, as_of)

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
            row = first_or_last(trait, part("at"), part("id"), part("value"),
                                where & part("at").notnull())  # fmt: skip
            columns[trait.name] = row["value"]
    return tiles.group_by(*by).aggregate(**columns) if columns else None


def _total(counts: ir.IntegerColumn, where: ir.BooleanValue) -> ir.IntegerScalar:
    """The sum of counts as a BIGINT. DuckDB sums integers to HUGEINT while Ibis types the sum
    as int64, so the cast back is spelled through a decimal, which Ibis does not drop; it is
    applied to each sum, not to each count."""
    return counts.sum(where=where).cast("decimal(38, 0)").cast("int64")


def rollup_values(
    value_tiles: ir.Table, traits: list[ValueTrait], as_of: datetime | ir.TimestampValue
) -> ir.Table:
    """One row per entity with a column per value trait (most frequent value, ties: the
    smallest; the sorted distinct values; or how many there are); the traits share their
    `value_selection` and window, so one pass serves them all."""
    kept = value_tiles.filter(tile_in_window(value_tiles, traits[0], as_of))
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


def day_tile_rows(tiles: ir.Table, traits: list[ComputedTrait]) -> ir.Table:
    """Hour tiles of `traits` combined into one row per (day, user, context account), with the
    same columns (`tile_hour` is the day's first hour)."""
    return _combined(tiles, traits, _by_day(tiles, ()))


def _combined(
    tiles: ir.Table,
    traits: list[ComputedTrait],
    grouped: GroupedTable,
    in_window: Callable[[ComputedTrait], ir.BooleanValue] | None = None,
) -> ir.Table:
    """The tiles of `traits` combined per group of `grouped` (a grouping of `tiles`) into one
    row with the same partial columns; with `in_window`, each trait combines only the tiles
    `in_window(trait)` selects."""
    columns, picked = {}, []
    for trait in traits:
        where = in_window(trait) if in_window else None

        def part(name: str, t: ComputedTrait = trait) -> ir.Column:
            return tiles[tile_column(t, name)]

        if isinstance(trait, EventCounter | UniqueUsers):
            columns[tile_column(trait, "n")] = _total(part("n"), _or_true(where))
        elif isinstance(trait, Aggregation):
            if trait.function in ("sum", "avg"):
                columns[tile_column(trait, "sum")] = part("sum").sum(where=where)
                columns[tile_column(trait, "n")] = _total(part("n"), _or_true(where))
            else:
                values = part(trait.function)
                reduce = values.min if trait.function == "min" else values.max
                columns[tile_column(trait, trait.function)] = reduce(where=where)
        elif isinstance(trait, FirstValue | LastValue):
            present = part("at").notnull()
            row = first_or_last(trait, part("at"), part("id"), part("value"),
                                present if where is None else present & where)  # fmt: skip
            picked.append((trait, row))
    return _aggregate(grouped, columns, picked)


def _or_true(where: ir.BooleanValue | None) -> ir.BooleanValue:
    return ibis.literal(True) if where is None else where


def day_value_tile_rows(value_tiles: ir.Table) -> ir.Table:
    """Value tiles combined into one row per (selection, day, user, context account, value)."""
    grouped = _by_day(value_tiles, ("selection",), ("value",))
    return grouped.aggregate(times=_total(value_tiles.times, ibis.literal(True)))


def _by_day(tiles: ir.Table, before: tuple, after: tuple = ()) -> GroupedTable:
    return tiles.group_by(
        *before,
        tile_hour=tiles.tile_hour.truncate("D"),
        user_id=tiles.user_id,
        context_group_id=tiles.context_group_id,
        **{name: tiles[name] for name in after},
    )


def tiles_as_of(
    backend: ibis.BaseBackend,
    as_of: datetime | ir.TimestampValue,
    traits: list[ComputedTrait],
    values_of: ValueTrait | None = None,
    day_partials: bool = False,
) -> ir.Table:
    """The tiles a snapshot ending at `as_of` rolls `traits` up from (with `values_of`, the
    value tiles of that trait's selection): the day tile (`whole_day`) of each day before
    `as_of`'s day, and the hour tiles of `as_of`'s day and of each day a trait's window starts
    in, for the hours of that day inside the window (`tile_in_window` picks, per trait).
    With `day_partials`, the day partials of the snapshot hour's day (`build_day_partials`)
    stand for the day tiles of the days before it."""
    hour_table, day_table = (VALUE_TILES, DAY_VALUE_TILES) if values_of else (TILES, DAY_TILES)
    hours, days = backend.table(hour_table), backend.table(day_table)
    partials = backend.table(DAY_VALUE_PARTIALS if values_of else DAY_PARTIALS) if (
        day_partials) else None  # fmt: skip
    if values_of is not None:
        hours = hours.filter(hours.selection == value_selection(values_of))
        days = days.filter(days.selection == value_selection(values_of))
        if partials is not None:
            partials = partials.filter(partials.selection == partial_key(values_of))
        columns = ["tile_hour", "user_id", "context_group_id", "value", "times"]
    else:
        parts = [tile_column(trait, part) for trait in traits for part in tile_parts(trait)]
        columns = ["tile_hour", "user_id", "context_group_id", *parts]
    end = timestamp(as_of)
    today = end.truncate("D")
    wanted = hours.tile_hour >= today
    for length in sorted({trait.window_length for trait in traits} - {None}):
        first_day = (end - window_interval(length)).truncate("D")
        wanted |= (hours.tile_hour >= first_day) & (hours.tile_hour < first_day + ONE_DAY)
    hours = hours.filter(hours.tile_hour < end, wanted).select(*columns)
    days = days.filter(days.tile_hour < today).select(*columns)
    if partials is not None:
        # (the snapshot ending at midnight also counts the tile of the day it ends)
        days = days.filter(days.tile_hour >= (end - ibis.interval(hours=1)).truncate("D"))
        days = partials.select(*columns).union(days)
    return days.mutate(whole_day=True).union(hours.mutate(whole_day=False))


def tile_parts(trait: ComputedTrait) -> list[str]:
    """The partial aggregates of a (not value) trait in the tiles (see `tile_rows`)."""
    if isinstance(trait, EventCounter | UniqueUsers):
        return ["n"]
    if isinstance(trait, Aggregation):
        return ["sum", "n"] if trait.function in ("sum", "avg") else [trait.function]
    return ["value", "at", "id"]


def tile_in_window(
    tiles: ir.Table, trait: ComputedTrait, as_of: datetime | ir.TimestampValue
) -> ir.BooleanValue:
    """Whether a tile of `tiles_as_of` counts for `trait`: it lies inside the trait's window,
    and it is an hour tile only where its day's tile is not (`as_of`'s day, and the day the
    window starts in when it starts after that day's first hour)."""
    end = timestamp(as_of)
    hour_counts = tiles.tile_hour >= end.truncate("D")
    if trait.window_length is None:
        return tiles.whole_day | hour_counts
    start = end - window_interval(trait.window_length)
    first_day = start.truncate("D")
    hour_counts |= (tiles.tile_hour < first_day + ONE_DAY) & (first_day < start)
    return (tiles.tile_hour >= start) & (tiles.whole_day | hour_counts)


ONE_DAY = ibis.interval(days=1)


def combines_by_day(trait: ComputedTrait) -> bool:
    """Whether the whole days inside the trait's window are the same in every snapshot of a
    day (all time, or a window of whole days), so that they can be combined once per day."""
    length = trait.window_length
    return length is None or length % timedelta(days=1) == timedelta(0)


def partial_key(trait: ValueTrait) -> str:
    """The key of a value trait's rows in `trait_value_day_partials`: its selection and window
    (traits sharing both share their rows)."""
    return f"{value_selection(trait)}/{trait.window_length}"


def build_day_partials(
    con: duckdb.DuckDBPyConnection, traits: list[ComputedTrait], day: datetime
) -> bool:
    """Bring `trait_day_partials` and `trait_value_day_partials` to the snapshot hours of `day`
    (midnight): the day tiles of the whole days inside each trait's window (all
    `combines_by_day`), combined into one row per user and context account (and value), dated
    the last of those days. Every snapshot hour of the day has the same whole days; the last
    (ending at midnight) also counts the day's own day tile, which `tiles_as_of` adds.

    The tables are a cache, kept with the version they were built from (their queries and the
    versions of the day tiles they read, `trait_tile_days`); return whether they were rebuilt.
    """
    backend = ibis.duckdb.from_connection(con)
    as_of, dated = day + timedelta(hours=1), timestamp(day - timedelta(days=1))
    queries = {}
    plain = [trait for trait in traits if not is_value_trait(trait)]
    if plain:
        days = backend.table(DAY_TILES)
        days = days.filter(days.tile_hour < day).mutate(whole_day=True)
        grouped = days.group_by("user_id", "context_group_id")
        rows = _combined(days, plain, grouped, lambda trait: tile_in_window(days, trait, as_of))
        queries[DAY_PARTIALS] = backend.compile(rows.mutate(tile_hour=dated))
    groups = {partial_key(trait): trait for trait in traits if is_value_trait(trait)}
    if groups:
        values = backend.table(DAY_VALUE_TILES)
        values = values.filter(values.tile_hour < day).mutate(whole_day=True)
        parts = []
        for key, trait in sorted(groups.items()):
            kept = values.filter(
                values.selection == value_selection(trait), tile_in_window(values, trait, as_of)
            )
            grouped = kept.group_by(
                selection=ibis.literal(key), user_id=kept.user_id,
                context_group_id=kept.context_group_id, value=kept.value,
            )  # fmt: skip
            parts.append(grouped.aggregate(times=_total(kept.times, ibis.literal(True))))
        queries[DAY_VALUE_PARTIALS] = backend.compile(ibis.union(*parts).mutate(tile_hour=dated))
    for table in {DAY_PARTIALS, DAY_VALUE_PARTIALS} - queries.keys():
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return refresh_day_cache(con, PARTIALS_VERSION, queries, TILE_DAYS, day)


def tiles_current(con: duckdb.DuckDBPyConnection, as_of: datetime) -> bool:
    """Whether the tiles hold every event the snapshots ending at or before `as_of` read: the
    hour tiles of every hour before it were built from that hour's current events, and the
    day tiles of the days before its day from their current hour tiles."""
    today = day_of(as_of)
    return not (
        stale_versions(con, TILE_HOURS, RAW_EVENT_HOURS, as_of)
        or stale_versions(con, TILE_DAYS, days_of(TILE_HOURS), today)
    )


@dataclass(frozen=True)
class TileRefresh:
    """What `refresh_tiles` did."""

    hours_rebuilt: int
    """Hours whose tiles were (re)built."""
    days_rebuilt: int
    """Days whose day tiles were (re)built."""
    tiles: int
    """Rows of `trait_tiles` after the refresh."""


def refresh_tiles(
    con: duckdb.DuckDBPyConnection,
    traits: list[ComputedTrait],
    days_before: datetime | None = None,
) -> TileRefresh:
    """Bring the tiles of `traits` (all tileable) up to date with `raw_events`: every hour's,
    and the day tiles of the days before `days_before` (of all days without it). A snapshot
    reads a day's tiles only once the day is over, so the hourly runs of a day need not
    rebuild that day's tiles every hour."""
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
    days = {
        DAY_TILES: backend.compile(day_tile_rows(stale_days(backend, TILES), plain)),
        DAY_VALUE_TILES: backend.compile(day_value_tile_rows(stale_days(backend, VALUE_TILES)))
        if valued
        else None,
    }
    days_rebuilt = refresh_tile_family(
        con, TILE_DAYS, days, source=days_of(TILE_HOURS), before=days_before
    )
    (rows,) = con.execute(f"SELECT count(*) FROM {TILES}").fetchone()
    return TileRefresh(hours_rebuilt=rebuilt, days_rebuilt=days_rebuilt, tiles=rows)
