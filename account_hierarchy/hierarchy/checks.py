"""Rules checked on the stored hierarchy tables for a window of snapshot hours."""

from dataclasses import dataclass
from datetime import datetime

import duckdb

WINDOW_FILTER = "snapshot_hour >= $start AND snapshot_hour < $end"


@dataclass(frozen=True)
class Finding:
    """How many rows break a rule, with a few examples."""

    count: int
    examples: list[str]


def _find(con: duckdb.DuckDBPyConnection, sql: str, start: datetime, end: datetime) -> Finding:
    rows = con.execute(sql, {"start": start, "end": end}).fetchall()
    return Finding(len(rows), [" ".join(str(value) for value in row) for row in rows[:10]])


def repeated_ids(
    con: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...], start, end
) -> Finding:
    """Key combinations that appear more than once in a snapshot hour."""
    key_list = ", ".join(("snapshot_hour", *keys))
    return _find(
        con,
        f"SELECT {key_list} FROM {table} WHERE {WINDOW_FILTER} GROUP BY ALL HAVING count(*) > 1",
        start,
        end,
    )


def dangling_memberships(con: duckdb.DuckDBPyConnection, start, end) -> Finding:
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


def unflagged_self_ancestors(con: duckdb.DuckDBPyConnection, start, end) -> Finding:
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


def flagged_accounts(con: duckdb.DuckDBPyConnection, flag: str, start, end) -> Finding:
    """Accounts with a hierarchy flag (`in_cycle` or `parent_missing`) at the window's last
    hour, with their parent."""
    if flag not in ("in_cycle", "parent_missing"):
        raise ValueError(flag)
    return _find(
        con,
        f"""
        SELECT account_id, parent_account_id FROM account_hierarchy
        WHERE {flag} AND snapshot_hour = (SELECT max(snapshot_hour) FROM account_hierarchy
                                          WHERE {WINDOW_FILTER})
        ORDER BY ALL
        """,
        start,
        end,
    )
