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

Paths are built top-down, one level at a time, so each account is one row however deep the
tree: from the roots (no parent, or a missing one) down; what that leaves out hangs off a
cycle. Its cycle members are found by pointer jumping (each account's ancestor 2, 4, 8, ...
steps up lands in the cycle after a logarithmic number of joins), and become roots too.
"""

from datetime import datetime

import duckdb

from account_hierarchy.hierarchy.schemas import validate_entities
from account_hierarchy.hierarchy.tables import ensure_hierarchy_tables

# Each account of the window with its parent; roots are where the walk upwards ends.
EDGES_SQL = """
CREATE OR REPLACE TEMP TABLE hierarchy_edges AS
SELECT a.snapshot_hour, a.account_id, a.parent_account_id AS parent,
       a.parent_account_id IS NOT NULL AND known.account_id IS NULL AS parent_missing,
       a.parent_account_id IS NULL OR known.account_id IS NULL AS is_root,
       false AS in_cycle
FROM accounts AS a
LEFT JOIN accounts AS known
    ON known.snapshot_hour = a.snapshot_hour AND known.account_id = a.parent_account_id
WHERE a.snapshot_hour >= $start AND a.snapshot_hour < $end
"""
# Paths from the roots not descended from yet, down through every account that is no root.
DESCEND_SQL = """
INSERT INTO hierarchy_paths
WITH RECURSIVE down(snapshot_hour, account_id, path) AS (
    SELECT snapshot_hour, account_id,
           CASE WHEN parent_missing THEN [parent, account_id] ELSE [account_id] END
    FROM hierarchy_edges AS e
    WHERE is_root AND NOT EXISTS (
        SELECT 1 FROM hierarchy_paths AS p
        WHERE p.snapshot_hour = e.snapshot_hour AND p.account_id = e.account_id)
    UNION ALL
    SELECT e.snapshot_hour, e.account_id, list_append(d.path, e.account_id)
    FROM down AS d
    JOIN hierarchy_edges AS e ON e.snapshot_hour = d.snapshot_hour AND e.parent = d.account_id
    WHERE NOT e.is_root
)
SELECT * FROM down
"""
# The accounts no root leads to, each with its parent (which is one of them too).
UNREACHED_SQL = """
CREATE OR REPLACE TEMP TABLE hierarchy_jumps AS
SELECT snapshot_hour, account_id, parent AS ancestor FROM hierarchy_edges AS e
WHERE NOT EXISTS (SELECT 1 FROM hierarchy_paths AS p
                  WHERE p.snapshot_hour = e.snapshot_hour AND p.account_id = e.account_id)
"""
# Each ancestor twice as far up.
JUMP_SQL = """
CREATE OR REPLACE TEMP TABLE hierarchy_jumps AS
SELECT j.snapshot_hour, j.account_id, up.ancestor
FROM hierarchy_jumps AS j
JOIN hierarchy_jumps AS up ON up.snapshot_hour = j.snapshot_hour AND up.account_id = j.ancestor
"""
# Once far enough up, every ancestor is in a cycle, and every cycle member is someone's.
CYCLES_SQL = """
UPDATE hierarchy_edges AS e SET is_root = true, in_cycle = true
FROM (SELECT DISTINCT snapshot_hour, ancestor FROM hierarchy_jumps) AS cycle
WHERE e.snapshot_hour = cycle.snapshot_hour AND e.account_id = cycle.ancestor
"""
HIERARCHY_SQL = """
CREATE OR REPLACE TEMP TABLE hierarchy_rows AS
SELECT p.snapshot_hour, p.account_id, e.parent AS parent_account_id,
       p.path[1] AS ultimate_parent_id, CAST(len(p.path) - 1 AS INTEGER) AS depth, p.path,
       e.in_cycle, e.parent_missing
FROM hierarchy_paths AS p JOIN hierarchy_edges AS e USING (snapshot_hour, account_id)
"""


def build_hierarchy(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> int:
    """Write `account_hierarchy` for the snapshot hours in `[start, end)` from `accounts`."""
    ensure_hierarchy_tables(con)
    con.execute(EDGES_SQL, {"start": start, "end": end})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE hierarchy_paths "
        "(snapshot_hour TIMESTAMP, account_id VARCHAR, path VARCHAR[])"
    )
    con.execute(DESCEND_SQL)
    con.execute(UNREACHED_SQL)
    (unreached,) = con.execute(
        "SELECT coalesce(max(n), 0) FROM "
        "(SELECT count(*) AS n FROM hierarchy_jumps GROUP BY snapshot_hour)"
    ).fetchone()
    if unreached:
        # A tail leading into a cycle is shorter than the hour's unreached accounts.
        for _ in range((unreached - 1).bit_length()):
            con.execute(JUMP_SQL)
        con.execute(CYCLES_SQL)
        con.execute(DESCEND_SQL)
    con.execute(HIERARCHY_SQL)
    validate_entities(con, "account_hierarchy", "hierarchy_rows")
    con.execute(
        "DELETE FROM account_hierarchy WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        {"start": start, "end": end},
    )
    con.execute("INSERT INTO account_hierarchy SELECT * FROM hierarchy_rows ORDER BY ALL")
    (count,) = con.execute("SELECT count(*) FROM hierarchy_rows").fetchone()
    return count
