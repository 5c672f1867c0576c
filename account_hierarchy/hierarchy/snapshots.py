"""The hierarchy stage on DuckDB: the four tables (memberships, users, accounts, the account
tree) for every hour of a window, a day of hours at a time."""

from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from account_hierarchy.hierarchy.entities import build_accounts, build_memberships, build_users
from account_hierarchy.hierarchy.tables import record_snapshot_hours
from account_hierarchy.hierarchy.tiles import refresh_hierarchy_partials, refresh_hierarchy_tiles
from account_hierarchy.hierarchy.tree import build_hierarchy
from account_hierarchy.partitions import day_of

# Hours built in one pass. Every hour holds a full snapshot (at 10M events, 100,000 users with
# their traits), and a pass stages its rows in temp tables before writing them: a month in one
# pass needs more temporary disk than a laptop has; a day at a time costs no more. A pass
# never crosses midnight: it reads the day partials of its day.
HOURS_PER_PASS = 24


@dataclass(frozen=True)
class BuiltSnapshots:
    """What `build_snapshots` wrote (each table's row count) and what its caches did: how many
    hours of hierarchy tiles, and for how many days the day partials, it rebuilt."""

    rows: dict[str, int]
    tile_hours_rebuilt: int
    day_partials_rebuilt: int


def build_snapshots(
    con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, parent_trait: str
) -> BuiltSnapshots:
    """Replace the window `[start, end)` of the four tables. Each hour's snapshot depends on
    no other hour of the window, so building it in passes gives the same rows as one pass;
    each pass holds hours of one day and reads that day's partials."""
    counts = dict.fromkeys(("account_memberships", "users", "accounts", "account_hierarchy"), 0)
    rebuilt, tile_hours_rebuilt = 0, refresh_hierarchy_tiles(con)
    pass_start = start
    while pass_start < end:
        day = day_of(pass_start)
        pass_end = min(pass_start + timedelta(hours=HOURS_PER_PASS), day + timedelta(days=1), end)
        rebuilt += refresh_hierarchy_partials(con, day)
        counts["account_memberships"] += build_memberships(con, pass_start, pass_end)
        counts["users"] += build_users(con, pass_start, pass_end)
        counts["accounts"] += build_accounts(con, pass_start, pass_end, parent_trait)
        counts["account_hierarchy"] += build_hierarchy(con, pass_start, pass_end)
        pass_start = pass_end
    record_snapshot_hours(con, start, end)
    return BuiltSnapshots(counts, tile_hours_rebuilt, rebuilt)
