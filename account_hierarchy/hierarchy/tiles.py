"""Hourly tiles of the hierarchy's events, so that a snapshot reads small per-hour rows instead
of every event (and every call's JSON):

- `hierarchy_seen_tiles`: per kind, hour and key, when the key was first and last seen in that
  hour: `user` (`user_id`, any event), `account` (`account_id`, group calls) and `membership`
  (`user_id` and `account_id`, group calls with a userId);
- `custom_trait_tiles`: per call type, hour, entity (`userId` of identify calls, `groupId` of
  group calls) and trait key, the latest value the hour's calls set (by event time, then
  messageId; a later hour always wins, its events being later);
- `custom_trait_key_tiles`: per call type, hour and key, the JSON types of the key's non-null
  values and whether all its strings read as ISO-8601 timestamps (for `trait_columns.py`).

They are kept like the trait tiles (`tile_cache.py`): `refresh_hierarchy_tiles` rebuilds the
hours whose events changed.

The first two are also combined per day (`refresh_hierarchy_partials`): for the snapshots of a
day, `hierarchy_seen_partials` holds per kind and key when it was first and last seen before
that day, and `custom_trait_partials` per call type, entity and key the latest value set
before that day, both dated the hour before the day. A snapshot reads them and the hour tiles
of its own day instead of every hour tile of its history.
"""

from datetime import datetime

import duckdb

from account_hierarchy.tile_cache import (
    STALE_EVENTS_SQL,
    refresh_day_cache,
    refresh_tile_family,
)

SEEN_TILES = "hierarchy_seen_tiles"
CUSTOM_TRAIT_TILES, CUSTOM_TRAIT_KEY_TILES = "custom_trait_tiles", "custom_trait_key_tiles"
HIERARCHY_TILE_HOURS = "hierarchy_tile_hours"
SEEN_PARTIALS, CUSTOM_TRAIT_PARTIALS = "hierarchy_seen_partials", "custom_trait_partials"
HIERARCHY_PARTIALS_VERSION = "hierarchy_partials_version"
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"

SEEN_SQL = f"""
SELECT 'user' AS kind, event_hour AS tile_hour, user_id, NULL::VARCHAR AS account_id,
       min(timestamp) AS first_at, max(timestamp) AS last_at
FROM {STALE_EVENTS_SQL} WHERE user_id IS NOT NULL GROUP BY ALL
UNION ALL
SELECT 'account', event_hour, NULL, group_id, min(timestamp), max(timestamp)
FROM {STALE_EVENTS_SQL} WHERE type = 'group' GROUP BY ALL
UNION ALL
SELECT 'membership', event_hour, user_id, group_id, min(timestamp), max(timestamp)
FROM {STALE_EVENTS_SQL} WHERE type = 'group' AND user_id IS NOT NULL GROUP BY ALL
"""

# The trait fields of the identify and group calls of the hours being rebuilt.
_FIELDS = f"""
FROM (SELECT * FROM {STALE_EVENTS_SQL} WHERE type IN ('identify', 'group')) AS e,
     json_each(e.traits) AS field
"""

VALUES_SQL = f"""
SELECT e.type AS message_type, e.event_hour AS tile_hour,
       CASE e.type WHEN 'identify' THEN e.user_id ELSE e.group_id END AS entity_id,
       -- (of a key given twice in one call, the first value, as everywhere else)
       field.key, arg_max(field.value, (e.timestamp, e.message_id, -field.id)) AS value
{_FIELDS}
WHERE CASE e.type WHEN 'identify' THEN e.user_id ELSE e.group_id END IS NOT NULL
GROUP BY ALL
"""

# The JSON types of the values `VALUES_SQL` keeps (an entity's calls, the first value of a key
# given twice); an integer beyond 64 bits, which DuckDB types DOUBLE, is an integer.
KEY_TYPES_SQL = f"""
SELECT message_type, tile_hour, key,
       list(DISTINCT json_type) FILTER (WHERE json_type <> 'NULL') AS json_types,
       bool_and(regexp_matches(text, '{_ISO_TIMESTAMP}')
                AND try_cast(text AS TIMESTAMPTZ) IS NOT NULL)
           FILTER (WHERE json_type = 'VARCHAR') AS all_timestamps
FROM (
    SELECT e.type AS message_type, e.event_hour AS tile_hour, field.key,
           CASE WHEN field.type = 'DOUBLE' AND regexp_matches(field.value::VARCHAR, '^-?[0-9]+$')
                THEN 'BIGINT' ELSE field.type END AS json_type,
           field.value ->> '$' AS text
    {_FIELDS}
    WHERE CASE e.type WHEN 'identify' THEN e.user_id ELSE e.group_id END IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY e.message_id, field.key ORDER BY field.id) = 1
)
GROUP BY ALL
"""


def refresh_hierarchy_tiles(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the three tables up to date with `raw_events`; return how many hours were
    rebuilt."""
    queries = {SEEN_TILES: SEEN_SQL, CUSTOM_TRAIT_TILES: VALUES_SQL,
               CUSTOM_TRAIT_KEY_TILES: KEY_TYPES_SQL}  # fmt: skip
    return refresh_tile_family(con, HIERARCHY_TILE_HOURS, queries)


# The day partials, for the snapshots of `$day`: the hour tiles before it, combined.
PARTIALS_SQL = {
    SEEN_PARTIALS: f"""
        SELECT kind, CAST($day AS TIMESTAMP) - INTERVAL 1 HOUR AS tile_hour, user_id, account_id,
               min(first_at) AS first_at, max(last_at) AS last_at
        FROM {SEEN_TILES} WHERE tile_hour < $day
        GROUP BY kind, user_id, account_id
    """,
    CUSTOM_TRAIT_PARTIALS: f"""
        SELECT message_type, CAST($day AS TIMESTAMP) - INTERVAL 1 HOUR AS tile_hour, entity_id,
               key, arg_max(value, tile_hour) AS value
        FROM {CUSTOM_TRAIT_TILES} WHERE tile_hour < $day
        GROUP BY message_type, entity_id, key
    """,
}


def refresh_hierarchy_partials(con: duckdb.DuckDBPyConnection, day: datetime) -> bool:
    """Bring the hierarchy's day partials to the snapshots of `day` (midnight), rebuilding
    them unless they were built for that day from the same hour tiles; return whether they
    were rebuilt. The hour tiles must be up to date (`refresh_hierarchy_tiles`)."""
    return refresh_day_cache(
        con, HIERARCHY_PARTIALS_VERSION, PARTIALS_SQL, HIERARCHY_TILE_HOURS, day
    )


# The rows of a tile table a window starting on `$day` reads: the day's partials, then the
# hour tiles from the day on (`refresh_hierarchy_partials` brought the partials to `$day`).
SEEN_SINCE_DAY = (
    f"(SELECT * FROM {SEEN_PARTIALS} UNION ALL BY NAME "
    f"SELECT * FROM {SEEN_TILES} WHERE tile_hour >= $day)"
)
CUSTOM_TRAITS_SINCE_DAY = (
    f"(SELECT * FROM {CUSTOM_TRAIT_PARTIALS} UNION ALL BY NAME "
    f"SELECT * FROM {CUSTOM_TRAIT_TILES} WHERE tile_hour >= $day)"
)
