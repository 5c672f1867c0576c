"""The hierarchy stage on DuckDB: the four tables (memberships, users, accounts, the account
tree) for every hour of a window, a day of hours at a time."""

from datetime import datetime, timedelta

import duckdb

from account_hierarchy.hierarchy.entities import build_accounts, build_memberships, build_users
from account_hierarchy.hierarchy.tree import build_hierarchy

# Hours built in one pass. Every hour holds a full snapshot (at 10M events, 100,000 users with
# their traits), and a pass stages its rows in temp tables before writing them: a month in one
# pass needs more temporary disk than a laptop has; a day at a time costs no more.
HOURS_PER_PASS = 24


def build_snapshots(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, parent_trait: str
) -> dict[str, int]:
    """Replace the window `[start, end)` of the four tables; return each table's row count.
    Each hour's snapshot depends on no other hour of the window, so building it in passes
    gives the same rows as one pass."""
    counts = dict.fromkeys(("account_memberships", "users", "accounts", "account_hierarchy"), 0)
    pass_start = start
    while pass_start < end:
        pass_end = min(pass_start + timedelta(hours=HOURS_PER_PASS), end)
        counts["account_memberships"] += build_memberships(con, pass_start, pass_end)
        counts["users"] += build_users(con, pass_start, pass_end)
        counts["accounts"] += build_accounts(con, pass_start, pass_end, parent_trait)
        counts["account_hierarchy"] += build_hierarchy(con, pass_start, pass_end)
        pass_start = pass_end
    return counts
