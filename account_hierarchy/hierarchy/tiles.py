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
"""

import duckdb

from account_hierarchy.tile_cache import STALE_EVENTS_SQL, refresh_tile_family

SEEN_TILES = "hierarchy_seen_tiles"
CUSTOM_TRAIT_TILES, CUSTOM_TRAIT_KEY_TILES = "custom_trait_tiles", "custom_trait_key_tiles"
HIERARCHY_TILE_HOURS = "hierarchy_tile_hours"
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
       field.key, arg_max(field.value, (e.timestamp, e.message_id)) AS value
{_FIELDS}
WHERE CASE e.type WHEN 'identify' THEN e.user_id ELSE e.group_id END IS NOT NULL
GROUP BY ALL
"""

KEY_TYPES_SQL = f"""
SELECT e.type AS message_type, e.event_hour AS tile_hour, field.key,
       list(DISTINCT field.type) FILTER (WHERE field.type <> 'NULL') AS json_types,
       bool_and(regexp_matches(field.value ->> '$', '{_ISO_TIMESTAMP}')
                AND try_cast(field.value ->> '$' AS TIMESTAMPTZ) IS NOT NULL)
           FILTER (WHERE field.type = 'VARCHAR') AS all_timestamps
{_FIELDS}
GROUP BY ALL
"""


def refresh_hierarchy_tiles(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the three tables up to date with `raw_events`; return how many hours were
    rebuilt."""
    queries = {SEEN_TILES: SEEN_SQL, CUSTOM_TRAIT_TILES: VALUES_SQL,
               CUSTOM_TRAIT_KEY_TILES: KEY_TYPES_SQL}  # fmt: skip
    return refresh_tile_family(con, HIERARCHY_TILE_HOURS, queries)
