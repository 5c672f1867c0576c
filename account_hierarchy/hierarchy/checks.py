"""Rules checked on the stored hierarchy tables for a window of snapshot hours."""

from dataclasses import dataclass
from datetime import datetime

import duckdb

WINDOW_FILTER = "snapshot_hour >= $start AND snapshot_hour < $end"
EXAMPLES_SHOWN = 10


@dataclass(frozen=True)
class Finding:
    """How many rows break a rule, with the first few (`columns` names their values)."""

    count: int
    examples: list[str]
    columns: tuple[str, ...]


def _find(con: duckdb.DuckDBPyConnection, sql: str, start: datetime, end: datetime) -> Finding:
    found = con.execute(sql, {"start": start, "end": end})
    columns = tuple(column[0] for column in found.description)
    rows = found.fetchall()
    examples = [" ".join(str(value) for value in row) for row in rows[:EXAMPLES_SHOWN]]
    return Finding(len(rows), examples, columns)


def repeated_ids(
    con: duckdb.DuckDBPyConnection,
    table: str,
    keys: tuple[str, ...],
    start: datetime,
    end: datetime,
) -> Finding:
    """Key combinations that appear more than once in a snapshot hour."""
    key_list = ", ".join(("snapshot_hour", *keys))
    return _find(
        con,
        f"SELECT {key_list} FROM {table} WHERE {WINDOW_FILTER} GROUP BY ALL HAVING count(*) > 1",
        start,
        end,
    )


def dangling_memberships(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> Finding:
    """Memberships whose user or account is not in `users` / `accounts` for the same hour."""
    return _find(
        con,
        f"""
        SELECT m.snapshot_hour, m.user_id, m.account_id FROM account_memberships AS m
        WHERE m.{WINDOW_FILTER}
          AND (NOT EXISTS (SELECT 1 FROM users AS u WHERE u.snapshot_hour = m.snapshot_hour
                           AND u.user_id = m.user_id)
               OR NOT EXISTS (SELECT 1 FROM accounts AS a
                              WHERE a.snapshot_hour = m.snapshot_hour
                                AND a.account_id = m.account_id))
        ORDER BY ALL
        """,
        start,
        end,
    )


def unflagged_self_ancestors(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime
) -> Finding:
    """Accounts that are their own ancestor without being flagged as cycle members."""
    return _find(
        con,
        f"""
        SELECT snapshot_hour, account_id FROM account_hierarchy
        WHERE {WINDOW_FILTER} AND NOT in_cycle
          AND list_contains(list_slice(path, 1, len(path) - 1), account_id)
        ORDER BY ALL
        """,
        start,
        end,
    )


def hierarchy_not_following_parents(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime
) -> Finding:
    """Rows of `account_hierarchy` that do not follow from their parent's row of the same hour
    (checked one link at a time, without the walk that built them), and accounts of `accounts`
    without a row. A cycle member is flagged, a root of itself, its parent is a flagged member
    too and it is a flagged member's parent (so the flagged accounts, each one's parent among
    them and each one a parent among them, are exactly cycles); a missing parent (no account)
    is flagged and the root above its child; any other account is one deeper than its parent,
    under the same root, its path the parent's and itself. So an unflagged cycle (whose depths
    would each be one more than the next) or an unflagged missing parent cannot pass."""
    return _find(
        con,
        f"""
        WITH flagged_parents AS (
            SELECT DISTINCT snapshot_hour, parent_account_id AS account_id
            FROM account_hierarchy WHERE in_cycle AND {WINDOW_FILTER}
        ), rows AS (
            SELECT h.*, a.account_id IS NOT NULL AS is_account,
                   a.parent_account_id AS account_parent, p.account_id IS NOT NULL AS has_parent,
                   p.in_cycle AS parent_in_cycle, p.depth AS parent_depth,
                   p.ultimate_parent_id AS parent_root, p.path AS parent_path,
                   f.account_id IS NOT NULL AS parents_a_flagged
            FROM account_hierarchy AS h
            LEFT JOIN accounts AS a USING (snapshot_hour, account_id)
            LEFT JOIN account_hierarchy AS p
              ON p.snapshot_hour = h.snapshot_hour AND p.account_id = h.parent_account_id
            LEFT JOIN flagged_parents AS f USING (snapshot_hour, account_id)
            WHERE h.{WINDOW_FILTER}
        ), judged AS (
            SELECT snapshot_hour, account_id, CASE
                WHEN NOT is_account THEN 'not in accounts'
                WHEN parent_account_id IS DISTINCT FROM account_parent
                    THEN 'parent differs from accounts'
                WHEN in_cycle AND NOT (has_parent AND parent_in_cycle AND parents_a_flagged
                                       AND depth = 0 AND ultimate_parent_id = account_id
                                       AND path = [account_id] AND NOT parent_missing)
                    THEN 'flagged in a cycle it is not in'
                WHEN in_cycle THEN NULL
                WHEN parent_account_id IS NULL AND NOT (depth = 0 AND ultimate_parent_id =
                        account_id AND path = [account_id] AND NOT parent_missing)
                    THEN 'a root that is not its own'
                WHEN parent_account_id IS NULL THEN NULL
                WHEN NOT has_parent AND NOT (parent_missing AND depth = 1
                        AND ultimate_parent_id = parent_account_id
                        AND path = [parent_account_id, account_id])
                    THEN 'parent missing but not flagged so'
                WHEN NOT has_parent THEN NULL
                WHEN parent_missing OR depth IS DISTINCT FROM parent_depth + 1
                     OR ultimate_parent_id IS DISTINCT FROM parent_root
                     OR path IS DISTINCT FROM list_append(parent_path, account_id)
                    THEN 'does not follow from its parent'
            END AS problem
            FROM rows
        )
        SELECT snapshot_hour, account_id, problem FROM judged WHERE problem IS NOT NULL
        UNION ALL
        SELECT snapshot_hour, account_id, 'no hierarchy row' FROM accounts AS a
        WHERE a.{WINDOW_FILTER} AND NOT EXISTS (
            SELECT 1 FROM account_hierarchy AS h
            WHERE h.snapshot_hour = a.snapshot_hour AND h.account_id = a.account_id)
        ORDER BY ALL
        """,
        start,
        end,
    )


def flagged_accounts(
    con: duckdb.DuckDBPyConnection, flag: str, start: datetime, end: datetime
) -> Finding:
    """Accounts with a hierarchy flag (`in_cycle` or `parent_missing`) at any hour of the
    window, with the hour and their parent."""
    if flag not in ("in_cycle", "parent_missing"):
        raise ValueError(flag)
    return _find(
        con,
        f"""
        SELECT snapshot_hour, account_id, parent_account_id FROM account_hierarchy
        WHERE {flag} AND {WINDOW_FILTER}
        ORDER BY ALL
        """,
        start,
        end,
    )
