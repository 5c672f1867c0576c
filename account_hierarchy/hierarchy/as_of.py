"""Snapshots "as of" each hour of a window, built from per-hour aggregates in one pass.

A snapshot for hour `h` holds what was known from events with `timestamp < h + 1 hour`, that
is from the events of every hour up to and including `h`. Rather than recomputing each hour from
scratch, the builders here aggregate events per hour once and carry the aggregates forward:
each hour's aggregate of a key holds from that hour until the key's next one (a span), and is
expanded to the snapshot hours of the window it covers.
"""

from datetime import datetime

import duckdb

from account_hierarchy.hierarchy.tiles import (
    CUSTOM_TRAITS_SINCE_DAY,
    refresh_hierarchy_partials,
    refresh_hierarchy_tiles,
)
from account_hierarchy.partitions import day_of

OBJECT_ROWS_PER_BATCH = 5_000_000
# The hour of an event for per-hour aggregates: every hour before the window `[$start, $end)`
# becomes the hour just before it, as no snapshot of the window tells those hours apart.
BEFORE_WINDOW = "greatest(event_hour, CAST($start AS TIMESTAMP) - INTERVAL 1 HOUR)"

# The snapshot hours in `[$start, $end)` of a span (`span_bounds`), one row each.
SPAN_HOURS = (
    "unnest(generate_series(greatest(first_hour, CAST($start AS TIMESTAMP)), "
    "least(until_hour, CAST($end AS TIMESTAMP)) - INTERVAL 1 HOUR, INTERVAL 1 HOUR))"
)


def span_bounds(keys: str) -> str:
    """The columns `first_hour` and `until_hour` (exclusive) of each row of a per-hour table of
    `keys`: a row holds from its `event_hour` (rows before the window `[$start, $end)` from its
    first hour) until the next row of its keys, else until the window's end."""
    return (
        "greatest(event_hour, CAST($start AS TIMESTAMP)) AS first_hour, "
        "lead(event_hour, 1, CAST($end AS TIMESTAMP)) "
        f"OVER (PARTITION BY {keys} ORDER BY event_hour) AS until_hour"
    )


def refresh_hierarchy_caches(con: duckdb.DuckDBPyConnection, start: datetime) -> datetime:
    """Bring the hierarchy's hour tiles up to date, and its day partials to the day of a
    window's `start`; return that day (the `$day` of the tables' `..._SINCE_DAY` rows)."""
    refresh_hierarchy_tiles(con)
    day = day_of(start)
    refresh_hierarchy_partials(con, day)
    return day


def carry_forward_first_last(
    con: duckdb.DuckDBPyConnection,
    hourly: str,
    keys: tuple[str, ...],
    target: str,
    start: datetime,
    end: datetime,
) -> None:
    """From `hourly(keys..., event_hour, first_at, last_at)` (hours before the window collapsed
    into the hour before it, `BEFORE_WINDOW`) create temp table `target` with one row per key
    and snapshot hour in `[start, end)` once the key has been seen, holding the first and last
    time seen up to the end of that hour."""
    key_list = ", ".join(keys)
    # Each hour's running first and last hold until the key's next hour seen.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target}_spans AS
        SELECT {key_list}, {span_bounds(key_list)},
               min(first_at) OVER running AS first_at,
               max(last_at) OVER running AS last_at
        FROM {hourly}
        WINDOW running AS (PARTITION BY {key_list} ORDER BY event_hour
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        """,
        {"start": start, "end": end},
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target} AS
        SELECT {SPAN_HOURS} AS snapshot_hour, {key_list}, first_at, last_at
        FROM {target}_spans
        WHERE first_hour < until_hour
        """,
        {"start": start, "end": end},
    )


def latest_traits(
    con: duckdb.DuckDBPyConnection,
    message_type: str,
    target: str,
    start: datetime,
    end: datetime,
) -> None:
    """Create temp table `target(snapshot_hour, entity_id, traits)`: for each entity (userId of
    identify calls, groupId of group calls) and snapshot hour, a JSON object with the latest
    value of every trait the entity's `message_type` calls ever set (by event time; on equal
    timestamps the greatest messageId wins), from the custom trait partials and tiles. A trait
    explicitly set to null is null. Values keep their JSON types."""
    day = refresh_hierarchy_caches(con, start)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target}_changes AS
        SELECT entity_id, {BEFORE_WINDOW} AS event_hour, key,
               arg_max(value, tile_hour) AS value
        FROM (SELECT *, tile_hour AS event_hour FROM {CUSTOM_TRAITS_SINCE_DAY}
              WHERE message_type = $type AND tile_hour < $end)
        GROUP BY ALL
        """,
        {"start": start, "end": end, "type": message_type, "day": day},
    )
    # Each change holds until the entity's next change of the key.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target}_spans AS
        SELECT entity_id, key, value, {span_bounds("entity_id, key")}
        FROM {target}_changes
        """,
        {"start": start, "end": end},
    )
    # An entity's object changes only where one of its keys does: it is built once per
    # segment between two such hours (not once per hour), then repeated for the segment's hours.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {target}_segments AS
        SELECT entity_id, first_hour,
               lead(first_hour, 1, CAST($end AS TIMESTAMP))
                   OVER (PARTITION BY entity_id ORDER BY first_hour) AS until_hour
        FROM (SELECT DISTINCT entity_id, first_hour FROM {target}_spans
              WHERE first_hour < until_hour)
        """,
        {"end": end},
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {target} (snapshot_hour TIMESTAMP, entity_id VARCHAR, "
        "traits JSON)"
    )
    # The objects are built for a share of the entities at a time: their list aggregation
    # cannot spill to disk, so each share stays within about `OBJECT_ROWS_PER_BATCH`
    # (segment, key) rows.
    keys_of_segments = (
        f"{target}_segments AS g JOIN {target}_spans AS s ON s.entity_id = g.entity_id "
        "AND s.first_hour <= g.first_hour AND g.first_hour < s.until_hour"
    )
    (rows,) = con.execute(f"SELECT count(*) FROM {keys_of_segments}").fetchone()
    shares = max(1, -(-rows // OBJECT_ROWS_PER_BATCH))
    for share in range(shares):
        con.execute(
            f"""
            INSERT INTO {target}
            SELECT {SPAN_HOURS} AS snapshot_hour, entity_id, traits
            FROM (
                SELECT g.entity_id, g.first_hour, g.until_hour,
                       -- (sorting each entity's small list is 2x faster than ORDER BY in
                       -- the aggregate)
                       ('{{' || array_to_string(list_transform(list_sort(list(
                           {{'key': s.key, 'entry': to_json(s.key) || ':' || s.value}}
                       )), field -> field.entry), ',') || '}}')::JSON AS traits
                FROM {keys_of_segments}
                WHERE hash(g.entity_id) % $shares = $share
                GROUP BY g.entity_id, g.first_hour, g.until_hour
            )
            """,
            {"start": start, "end": end, "shares": shares, "share": share},
        )
