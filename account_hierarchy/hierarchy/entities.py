"""Users, accounts and memberships as of each hour of a window.

- users: every `userId` seen in any event; the latest value of every identify trait; first and
  last time seen (any event).
- accounts: every `groupId` of a group call; the latest value of every group trait; first and
  last group call; how many users are associated; the parent account (a group trait,
  `parent_account_id` unless configured otherwise, numbers read as text, blank or a number
  that is not finite as none).
- memberships: a group call with both `userId` and `groupId` associates the user with the
  account; first and last association time. Anonymous group calls associate nobody.

"Latest" is by event time; on equal timestamps the greatest `messageId` wins.
"""

from datetime import datetime

import duckdb
import sqlglot.expressions as exp

from account_hierarchy.hierarchy.as_of import (
    BEFORE_WINDOW,
    carry_forward_first_last,
    latest_traits,
    refresh_hierarchy_caches,
)
from account_hierarchy.hierarchy.schemas import validate_entities
from account_hierarchy.hierarchy.tables import (
    ACCOUNT_COLUMNS,
    USER_COLUMNS,
    ensure_hierarchy_tables,
)
from account_hierarchy.hierarchy.tiles import SEEN_SINCE_DAY
from account_hierarchy.hierarchy.trait_columns import (
    infer_trait_columns,
    sync_table_columns,
    typed_select,
)
from account_hierarchy.ingest.segment_spec import stripped_sql


def _params(start: datetime, end: datetime) -> dict:
    return {"start": start, "end": end}


def build_memberships(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> int:
    """Write `account_memberships` for the snapshot hours in `[start, end)`; return row count."""
    ensure_hierarchy_tables(con)
    _seen(con, "membership", ("user_id", "account_id"), "membership_snapshots", start, end)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE membership_rows AS
        SELECT snapshot_hour, user_id, account_id, first_at AS first_associated_at,
               last_at AS last_associated_at
        FROM membership_snapshots
        """
    )
    validate_entities(con, "account_memberships", "membership_rows")
    return _replace_window(con, "account_memberships", "membership_rows", start, end)


def build_users(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    trait_columns: dict[str, str] | None = None,
) -> int:
    """Write `users` for the snapshot hours in `[start, end)`; return the row count. The typed
    trait columns are inferred from the events unless given (`trait_columns.py`)."""
    ensure_hierarchy_tables(con)
    _seen(con, "user", ("user_id",), "user_seen", start, end)
    latest_traits(con, "identify", "user_trait_values", start, end)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE user_base AS
        SELECT seen.snapshot_hour, seen.user_id, seen.first_at AS first_seen_at,
               seen.last_at AS last_seen_at, coalesce(t.traits, '{}'::JSON) AS traits
        FROM user_seen AS seen
        LEFT JOIN user_trait_values AS t
          ON t.snapshot_hour = seen.snapshot_hour AND t.entity_id = seen.user_id
        """
    )
    if trait_columns is None:
        trait_columns = infer_trait_columns(con, "identify", USER_COLUMNS)
    return _write_entities(con, "users", "user_base", trait_columns, USER_COLUMNS, start, end)


def build_accounts(
    con: duckdb.DuckDBPyConnection,
    start: datetime,
    end: datetime,
    parent_trait: str,
    trait_columns: dict[str, str] | None = None,
) -> int:
    """Write `accounts` for the snapshot hours in `[start, end)` (memberships must be built for
    those hours first); return the row count. The typed trait columns are inferred from the
    events unless given."""
    ensure_hierarchy_tables(con)
    _seen(con, "account", ("account_id",), "account_seen", start, end)
    latest_traits(con, "group", "account_trait_values", start, end)
    parent_text = "json_transform(json_extract(t.traits, $parent_path), '\"VARCHAR\"')"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE account_base AS
        SELECT seen.snapshot_hour, seen.account_id, seen.first_at AS first_seen_at,
               seen.last_at AS last_seen_at, coalesce(members.user_count, 0) AS user_count,
               -- (text as ingestion makes ids of any JSON value: 1e16 as 1e+16; no id of
               -- a number that is not finite, as ingestion quarantines those)
               CASE WHEN json_type(t.traits, $parent_path) <> 'DOUBLE'
                         OR isfinite(CAST(json_extract(t.traits, $parent_path) AS DOUBLE))
                    THEN nullif({stripped_sql(parent_text)}, '')
               END AS parent_account_id,
               coalesce(t.traits, '{{}}'::JSON) AS traits
        FROM account_seen AS seen
        LEFT JOIN account_trait_values AS t
          ON t.snapshot_hour = seen.snapshot_hour AND t.entity_id = seen.account_id
        LEFT JOIN (SELECT snapshot_hour, account_id, count(*) AS user_count
                   FROM account_memberships
                   WHERE snapshot_hour >= $start AND snapshot_hour < $end
                   GROUP BY ALL) AS members
          ON members.snapshot_hour = seen.snapshot_hour AND members.account_id = seen.account_id
        """,
        _params(start, end) | {"parent_path": json_pointer(parent_trait)},
    )
    if trait_columns is None:
        trait_columns = infer_trait_columns(con, "group", ACCOUNT_COLUMNS)
    return _write_entities(
        con, "accounts", "account_base", trait_columns, ACCOUNT_COLUMNS, start, end
    )


def _seen(
    con: duckdb.DuckDBPyConnection,
    kind: str,
    keys: tuple[str, ...],
    target: str,
    start: datetime,
    end: datetime,
) -> None:
    """Temp table `target`: per key of a kind of `hierarchy_seen_tiles` (`user`, `account`,
    `membership`) and snapshot hour, when the key was first and last seen up to the end of that
    hour. The hours before the window are aggregated as one (`BEFORE_WINDOW`), from the day
    partials of the window's first day and the hour tiles of that day."""
    day = refresh_hierarchy_caches(con, start)
    key_list = ", ".join(keys)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {target}_hours AS SELECT {key_list}, "
        f"{BEFORE_WINDOW} AS event_hour, min(first_at) AS first_at, max(last_at) AS last_at "
        f"FROM (SELECT *, tile_hour AS event_hour FROM {SEEN_SINCE_DAY} "
        "WHERE kind = $kind AND tile_hour < $end) GROUP BY ALL",
        {"start": start, "end": end, "kind": kind, "day": day},
    )
    carry_forward_first_last(con, f"{target}_hours", keys, target, start, end)


def _write_entities(
    con: duckdb.DuckDBPyConnection,
    table: str,
    base: str,
    trait_columns: dict[str, str],
    fixed_columns: tuple[str, ...],
    start: datetime,
    end: datetime,
) -> int:
    """Add the typed trait columns to `base`, validate, and replace the window in `table`."""
    select = exp.select(*fixed_columns, *typed_select(trait_columns)).from_(base)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {base}_typed AS {select.sql('duckdb')}")
    validate_entities(con, table, f"{base}_typed", trait_columns)
    sync_table_columns(con, table, trait_columns, fixed_columns)
    return _replace_window(con, table, f"{base}_typed", start, end)


def _replace_window(
    con: duckdb.DuckDBPyConnection, table: str, rows: str, start: datetime, end: datetime
) -> int:
    con.execute(
        f"DELETE FROM {table} WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        _params(start, end),
    )
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {rows} ORDER BY snapshot_hour")
    (count,) = con.execute(f"SELECT count(*) FROM {rows}").fetchone()
    return count


def json_pointer(key: str) -> str:
    """A JSON Pointer (RFC 6901) to a top-level key, taken literally (a JSONPath would read
    `*` as a wildcard)."""
    return "/" + key.replace("~", "~0").replace("/", "~1")
