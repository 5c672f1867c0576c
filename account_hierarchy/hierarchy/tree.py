"""Parent/child accounts as of each hour: parent, ultimate parent, depth and path.

The parent of an account is its `parent_account_id` in `accounts`. Following parents upwards:

- the walk stops at an account without a parent: that is the ultimate parent;
- a parent that never sent a group call (not in `accounts` that hour) ends the walk too: it is
  the ultimate parent, and the child is flagged `parent_missing`;
- an account whose parents lead back to itself is in a cycle: it is flagged `in_cycle` and is
  its own root (ultimate parent itself, depth 0, path of itself alone);
- an account whose parents lead into a cycle it is not part of stops at the first cycle member.

Depth counts the ancestors (a root has depth 0); `path` lists account ids from the ultimate parent
down to the account. Depth is not limited; the walk never loops.
"""

from datetime import datetime

import duckdb

from account_hierarchy.hierarchy.schemas import validate_entities
from account_hierarchy.hierarchy.tables import ensure_hierarchy_tables

HIERARCHY_SQL = """
CREATE OR REPLACE TEMP TABLE hierarchy_rows AS
WITH RECURSIVE edges AS (
    SELECT snapshot_hour, account_id, parent_account_id AS parent
    FROM accounts WHERE snapshot_hour >= $start AND snapshot_hour < $end
), walk(snapshot_hour, account_id, current_id, path, closed) AS (
    SELECT snapshot_hour, account_id, account_id, [account_id], false FROM edges
    UNION ALL
    SELECT w.snapshot_hour, w.account_id, e.parent, list_append(w.path, e.parent),
           list_contains(w.path, e.parent)
    FROM walk AS w
    JOIN edges AS e ON e.snapshot_hour = w.snapshot_hour AND e.account_id = w.current_id
    WHERE e.parent IS NOT NULL AND NOT w.closed
), full_walk AS (
    SELECT snapshot_hour, account_id, arg_max(path, len(path)) AS path,
           bool_or(closed) AS closed
    FROM walk GROUP BY ALL
), shaped AS (
    SELECT snapshot_hour, account_id,
           closed AND path[-1] = account_id AS in_cycle,
           CASE WHEN closed AND path[-1] = account_id THEN [account_id]
                WHEN closed THEN list_reverse(path[:list_position(path, path[-1])])
                ELSE list_reverse(path) END AS path
    FROM full_walk
)
SELECT s.snapshot_hour, s.account_id, e.parent AS parent_account_id,
       s.path[1] AS ultimate_parent_id, CAST(len(s.path) - 1 AS INTEGER) AS depth, s.path,
       s.in_cycle,
       e.parent IS NOT NULL AND known.account_id IS NULL AS parent_missing
FROM shaped AS s
JOIN edges AS e USING (snapshot_hour, account_id)
LEFT JOIN edges AS known ON known.snapshot_hour = e.snapshot_hour AND known.account_id = e.parent
"""


def build_hierarchy(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> int:
    """Write `account_hierarchy` for the snapshot hours in `[start, end)` from `accounts`."""
    ensure_hierarchy_tables(con)
    con.execute(HIERARCHY_SQL, {"start": start, "end": end})
    validate_entities(con, "account_hierarchy", "hierarchy_rows")
    con.execute(
        "DELETE FROM account_hierarchy WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        {"start": start, "end": end},
    )
    con.execute("INSERT INTO account_hierarchy SELECT * FROM hierarchy_rows ORDER BY ALL")
    (count,) = con.execute("SELECT count(*) FROM hierarchy_rows").fetchone()
    return count
