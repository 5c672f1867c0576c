"""Hourly caches of `raw_events` ("tiles"): tables holding, per event hour, what later stages
need from that hour's events (trait partials, custom trait changes), so that a snapshot reads
small per-hour rows instead of every event's JSON.

Each family of tiles has its own hours table (`tile_hour`, `events`, `checksum`,
`fingerprint`) recording the version of each hour its tiles were built from.
`refresh_tile_family` compares it with `raw_event_hours` (kept by ingestion: each hour's event
count and a checksum of its events' contents) and rebuilds exactly the hours whose events changed;
when the family's queries change (`fingerprint`), it rebuilds every hour.

A family's queries select the events of the hours listed in the temp table
`stale_tile_hours(tile_hour)` (`STALE_EVENTS_SQL`, or `stale_events` in Ibis), which the refresh
fills with a batch of stale hours (about `EVENTS_PER_BATCH` events) before running them.

A day cache (`refresh_day_cache`) holds tables built for one day from the tiles of the days
before it, such as the day partials every snapshot hour of that day reads; it is rebuilt when
the day, its queries, or the versions of the tiles it reads change.

A family of day tiles is kept the same way from a family of hour tiles: its source is the
days of the hour family's versions (`days_of`), so that a day is rebuilt (its queries select
the hour tiles of the days in `stale_tile_hours` with `stale_days`) whenever one of its hours
is, and the day's `tile_hour` is its first hour.
"""

import hashlib
from collections.abc import Iterator
from datetime import datetime

import duckdb
import ibis
import ibis.expr.types as ir

from account_hierarchy.warehouse import ensure_event_hours, table_names

STALE_HOURS = "stale_tile_hours"
# Stale hours are rebuilt a few at a time, about this many events at once.
EVENTS_PER_BATCH = 5_000_000


# The versions of the event hours: `event_hour`, `events`, `checksum` (kept by ingestion).
RAW_EVENT_HOURS = "raw_event_hours"

# `raw_events` of the hours being rebuilt, for a family's tile queries in SQL (`stale_events`
# gives them to Ibis).
STALE_EVENTS_SQL = (
    f"(SELECT * FROM raw_events WHERE event_hour IN (SELECT tile_hour FROM {STALE_HOURS}))"
)


def _stale_hours(backend: ibis.BaseBackend) -> ir.Table:
    """The temp table of the hours (days) being rebuilt, created empty if need be."""
    backend.raw_sql(f"CREATE TEMP TABLE IF NOT EXISTS {STALE_HOURS} (tile_hour TIMESTAMP)")
    return backend.table(STALE_HOURS)


def stale_events(backend: ibis.BaseBackend) -> ir.Table:
    """`raw_events` of the hours being rebuilt, for a family's tile queries in Ibis."""
    stale = _stale_hours(backend)
    events = backend.table("raw_events")
    return events.semi_join(stale, events.event_hour == stale.tile_hour)


def stale_days(backend: ibis.BaseBackend, hour_tiles: str) -> ir.Table:
    """The rows of the hour tiles `hour_tiles` in the days being rebuilt, for the queries of a
    family of day tiles."""
    days = _stale_hours(backend)
    hours = days.select(
        hour=ibis.range(days.tile_hour, days.tile_hour + ibis.interval(days=1),
                        ibis.interval(hours=1)).unnest()
    )  # fmt: skip
    tiles = backend.table(hour_tiles)
    # Joined on the hour itself, so that DuckDB skips the other days' row groups.
    return tiles.semi_join(hours, tiles.tile_hour == hours.hour)


def days_of(hours_table: str) -> str:
    """The versions of the days of an hour family's versions, as the source of a family of day
    tiles: a day changes when one of its hours does (events, checksum or fingerprint)."""
    return (
        "(SELECT date_trunc('day', tile_hour) AS event_hour, sum(events)::BIGINT AS events, "
        "hash(list((tile_hour, events, checksum, fingerprint) ORDER BY tile_hour)) AS checksum "
        f"FROM {hours_table} GROUP BY 1)"
    )


def refresh_tile_family(
    con: duckdb.DuckDBPyConnection,
    hours_table: str,
    queries: dict[str, str | None],
    source: str = RAW_EVENT_HOURS,
    before: datetime | None = None,
) -> int:
    """Bring the tile tables of one family (table name -> query over `stale_events`, or None for
    a table the family does not need) up to date with the versions in `source` (by default
    `raw_event_hours`; `days_of` for day tiles); return how many hours (days) were rebuilt.
    With `before`, only the hours (days) before it are compared and rebuilt; later ones are
    left as they are.
    An hour's version is recorded only after its tiles are written, so an interrupted
    refresh leaves those hours stale, to be rebuilt by the next one (no transaction needed:
    the caller's, if any, holds this too)."""
    ensure_event_hours(con)
    fingerprint = hashlib.sha1(repr(sorted(queries.items(), key=str)).encode()).hexdigest()
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STALE_HOURS} (tile_hour TIMESTAMP)")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {hours_table} (tile_hour TIMESTAMP PRIMARY KEY, "
        "events BIGINT, checksum UBIGINT, fingerprint VARCHAR)"
    )
    return _rebuild_stale(con, hours_table, queries, fingerprint, source, before or datetime.max)


def _rebuild_stale(
    con: duckdb.DuckDBPyConnection,
    hours_table: str,
    queries: dict[str, str | None],
    fingerprint: str,
    source: str,
    before: datetime,
) -> int:
    """Rebuild the tiles of the hours before `before` whose events or queries changed; return
    how many."""
    tables = table_names(con)
    # (with no hour recorded, the tables may still have the columns of earlier queries)
    (outdated, recorded) = con.execute(
        f"SELECT count(*) FILTER (fingerprint <> $f), count(*) FROM {hours_table}",
        {"f": fingerprint},
    ).fetchone()
    missing = any(query and table not in tables for table, query in queries.items())
    if outdated or missing or not recorded:
        for table, query in queries.items():
            con.execute(f"DROP TABLE IF EXISTS {table}")
            if query is not None:
                con.execute(f"CREATE TABLE {table} AS {query} WITH NO DATA")
        con.execute(f"DELETE FROM {hours_table}")
    stale = stale_versions(con, hours_table, source, before)
    for batch in _batches(stale):
        _rebuild_hours(con, hours_table, queries, fingerprint, source, batch)
    return len(stale)


def stale_versions(
    con: duckdb.DuckDBPyConnection, hours_table: str, source: str, before: datetime
) -> list[tuple[datetime, int]]:
    """The hours (days) before `before` whose version in `source` differs from the one
    `hours_table` records its tiles were built from (or that one of them lacks), with their
    event counts, in order."""
    return con.execute(
        "SELECT tile_hour, coalesce(events, 0) FROM ("
        f"SELECT event_hour AS tile_hour, events, checksum FROM {source} "
        "WHERE event_hour < $before EXCEPT "
        f"SELECT tile_hour, events, checksum FROM {hours_table} WHERE tile_hour < $before) "
        f"UNION SELECT tile_hour, 0 FROM (SELECT tile_hour FROM {hours_table} "
        f"WHERE tile_hour < $before EXCEPT SELECT event_hour FROM {source}) ORDER BY tile_hour",
        {"before": before},
    ).fetchall()


def _batches(hours: list[tuple[datetime, int]]) -> Iterator[list[datetime]]:
    """Consecutive runs of (hour, events) with at most `EVENTS_PER_BATCH` events (an hour with
    more is a batch of its own): their tiles' aggregates stay within DuckDB's memory limit."""
    batch: list[datetime] = []
    events = 0
    for hour, count in hours:
        if batch and events + count > EVENTS_PER_BATCH:
            yield batch
            batch, events = [], 0
        batch.append(hour)
        events += count
    if batch:
        yield batch


def _rebuild_hours(
    con: duckdb.DuckDBPyConnection,
    hours_table: str,
    queries: dict[str, str | None],
    fingerprint: str,
    source: str,
    hours: list[datetime],
) -> None:
    """Replace the tiles of `hours`, then record the versions they were built from."""
    con.execute(f"DELETE FROM {STALE_HOURS}")
    con.execute(f"INSERT INTO {STALE_HOURS} SELECT unnest($hours::TIMESTAMP[])", {"hours": hours})
    for table, query in queries.items():
        if query is not None:
            con.execute(
                f"DELETE FROM {table} WHERE tile_hour IN (SELECT tile_hour FROM {STALE_HOURS})"
            )
            con.execute(f"INSERT INTO {table} BY NAME {query}")
    con.execute(
        f"DELETE FROM {hours_table} WHERE tile_hour IN (SELECT tile_hour FROM {STALE_HOURS})"
    )
    con.execute(
        f"INSERT INTO {hours_table} SELECT event_hour, events, checksum, $f FROM {source} "
        f"WHERE event_hour IN (SELECT tile_hour FROM {STALE_HOURS})",
        {"f": fingerprint},
    )


def refresh_day_cache(
    con: duckdb.DuckDBPyConnection,
    version_table: str,
    queries: dict[str, str],
    versions_of: str,
    day: datetime,
) -> bool:
    """Bring the tables of a day cache (table name -> query, which may use `$day`) to `day`:
    unless `version_table` records the version they were built from (the day, the queries,
    and the versions in `versions_of`, a family's hours or days table, before the day), drop
    them and run the queries again. Return whether they were rebuilt."""
    (tiles_read,) = con.execute(
        "SELECT hash(list((tile_hour, events, checksum, fingerprint) ORDER BY tile_hour)) "
        f"FROM {versions_of} WHERE tile_hour < $day",
        {"day": day},
    ).fetchone()
    version = hashlib.sha1(repr((day, sorted(queries.items()), tiles_read)).encode()).hexdigest()
    con.execute(f"CREATE TABLE IF NOT EXISTS {version_table} (version VARCHAR)")
    if con.execute(f"SELECT version FROM {version_table}").fetchall() == [(version,)]:
        return False
    con.execute(f"DELETE FROM {version_table}")
    for table, query in queries.items():
        params = {"day": day} if "$day" in query else None
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {query}", params)
    # (recorded last: an interrupted rebuild leaves the tables stale, to be rebuilt next time)
    con.execute(f"INSERT INTO {version_table} VALUES ($version)", {"version": version})
    return True
