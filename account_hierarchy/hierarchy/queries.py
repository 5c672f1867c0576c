"""Reading the hierarchy snapshots: profiles of an account or a user, and the account tree."""

from datetime import datetime
from typing import Any

import duckdb

from account_hierarchy.json_text import parse_json
from account_hierarchy.partitions import hours_of
from account_hierarchy.warehouse import table_names


class NotInSnapshotError(LookupError):
    """The requested entity or snapshot hour is not in the warehouse."""


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def latest_snapshot_hour(
    con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] = ("accounts", "users")
) -> datetime:
    """The newest snapshot hour of any of `tables` (warehouse tables we own)."""
    union = " UNION ALL ".join(f"SELECT max(snapshot_hour) AS hour FROM {t}" for t in tables)
    try:
        (hour,) = con.execute(f"SELECT max(hour) FROM ({union})").fetchone()
    except duckdb.CatalogException:
        hour = None
    if hour is None:
        raise NotInSnapshotError(f"No snapshot in {', '.join(tables)} yet: materialize them.")
    return hour


def _entity(
    con: duckdb.DuckDBPyConnection, table: str, id_column: str, entity_id: str, hour: datetime
) -> dict[str, Any]:
    rows = _rows(
        con,
        f"SELECT * FROM {table} WHERE snapshot_hour = $hour AND {id_column} = $id",
        {"hour": hour, "id": entity_id},
    )
    if rows:
        return rows[0]
    if not snapshot_built(con, hour):
        newest = latest_snapshot_hour(con, (table,))
        raise NotInSnapshotError(
            f"No {table} in the snapshot of {hour} (is that hour materialized?); the newest "
            f"snapshot with {table} is {newest}."
        )
    raise NotInSnapshotError(f"{table[:-1]} {entity_id!r} is not in the snapshot of {hour}.")


def snapshot_built(con: duckdb.DuckDBPyConnection, hour: datetime) -> bool:
    """Whether the hierarchy snapshot of `hour` was built (see `unbuilt_hours`)."""
    return not unbuilt_hours(con, [hour])


def unbuilt_hours(con: duckdb.DuckDBPyConnection, hours: list[datetime]) -> list[datetime]:
    """The hours (sorted) whose hierarchy snapshots were not built: `hierarchy_hours` records
    the built ones (an hour before the first event has no rows); in a warehouse built before
    that table was kept, an hour with users or accounts was built."""
    tables = table_names(con)
    missing = hours
    for table in ("hierarchy_hours", "users", "accounts"):
        if missing and table in tables:
            window = {"first": missing[0], "last": missing[-1]}
            rows = con.execute(f"SELECT DISTINCT snapshot_hour FROM {table} "
                               "WHERE snapshot_hour BETWEEN $first AND $last", window)  # fmt: skip
            built = {hour for (hour,) in rows.fetchall()}
            missing = [hour for hour in missing if hour not in built]
    return missing


class HierarchyNotBuiltError(LookupError):
    """Hours whose hierarchy snapshots were not built, which a later stage needs."""


def require_hierarchy_built(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> None:
    """Fail naming the hours of `[start, end)` whose hierarchy snapshots were not built (their
    traits would be computed for no entity)."""
    hours = hours_of(start, end)
    if missing := unbuilt_hours(con, hours):
        raise HierarchyNotBuiltError(
            f"The hierarchy snapshots are not built for {len(missing)} of the {len(hours)} "
            f"hours from {start} to {end} (the first: {missing[0]}): materialize "
            "hierarchy_snapshots for them first."
        )


def _traits(row: dict[str, Any]) -> dict[str, Any]:
    return parse_json(row["traits"])


def account_profile(
    con: duckdb.DuckDBPyConnection, account_id: str, hour: datetime
) -> dict[str, Any]:
    """An account as of `hour`: traits, parent chain (nearest first), children and users
    (`seen` true). An id that only other accounts name as their parent has `seen` false, its
    children, and no traits, parent or users (null, or empty)."""
    params = {"hour": hour, "id": account_id}
    children = _rows(
        con,
        "SELECT account_id, user_count FROM accounts WHERE snapshot_hour = $hour "
        "AND parent_account_id = $id ORDER BY account_id",
        params,
    )
    try:
        account = _entity(con, "accounts", "account_id", account_id, hour)
    except NotInSnapshotError:
        if not children:
            raise
        return _parent_never_seen(account_id, hour, children)
    tree = _entity(con, "account_hierarchy", "account_id", account_id, hour)
    users = _rows(
        con,
        "SELECT m.user_id, u.traits, m.first_associated_at, m.last_associated_at "
        "FROM account_memberships AS m JOIN users AS u "
        "ON u.snapshot_hour = m.snapshot_hour AND u.user_id = m.user_id "
        "WHERE m.snapshot_hour = $hour AND m.account_id = $id ORDER BY m.user_id",
        params,
    )
    return {
        "account_id": account_id,
        "snapshot_hour": hour,
        "seen": True,
        "first_seen_at": account["first_seen_at"],
        "last_seen_at": account["last_seen_at"],
        "user_count": account["user_count"],
        "traits": _traits(account),
        "parent_account_id": account["parent_account_id"],
        "parent_chain": list(reversed(tree["path"][:-1])),
        "ultimate_parent_id": tree["ultimate_parent_id"],
        "depth": tree["depth"],
        "in_cycle": tree["in_cycle"],
        "parent_missing": tree["parent_missing"],
        "children": children,
        "users": [user | {"traits": _traits(user)} for user in users],
    }


def _parent_never_seen(account_id: str, hour: datetime, children: list[dict]) -> dict[str, Any]:
    """The profile of an id only other accounts name as their parent: the keys of a seen
    account's, with its children and nothing else (it is their ultimate parent)."""
    return {
        "account_id": account_id,
        "snapshot_hour": hour,
        "seen": False,
        "first_seen_at": None,
        "last_seen_at": None,
        "user_count": None,
        "traits": {},
        "parent_account_id": None,
        "parent_chain": [],
        "ultimate_parent_id": None,
        "depth": None,
        "in_cycle": None,
        "parent_missing": None,
        "children": children,
        "users": [],
    }


def user_profile(con: duckdb.DuckDBPyConnection, user_id: str, hour: datetime) -> dict[str, Any]:
    """A user as of `hour`: traits and accounts, each with the account's traits."""
    user = _entity(con, "users", "user_id", user_id, hour)
    accounts = _rows(
        con,
        "SELECT m.account_id, a.traits, m.first_associated_at, m.last_associated_at "
        "FROM account_memberships AS m JOIN accounts AS a "
        "ON a.snapshot_hour = m.snapshot_hour AND a.account_id = m.account_id "
        "WHERE m.snapshot_hour = $hour AND m.user_id = $id ORDER BY m.account_id",
        {"hour": hour, "id": user_id},
    )
    return {
        "user_id": user_id,
        "snapshot_hour": hour,
        "first_seen_at": user["first_seen_at"],
        "last_seen_at": user["last_seen_at"],
        "traits": _traits(user),
        "accounts": [account | {"traits": _traits(account)} for account in accounts],
    }


def tree_nodes(
    con: duckdb.DuckDBPyConnection, hour: datetime, root: str | None = None
) -> list[dict[str, Any]]:
    """The account tree as of `hour` in depth-first order, each node with its `level` below
    the drawn root. Parents that never sent a group call appear as nodes with `seen: false`
    (and every other field null). With `root`, only that account's subtree."""
    rows = _rows(
        con,
        "SELECT h.account_id, h.parent_account_id, h.ultimate_parent_id, h.depth, h.path, "
        "h.in_cycle, h.parent_missing, a.user_count, json_extract_string(a.traits, 'name') AS name "
        "FROM account_hierarchy AS h JOIN accounts AS a USING (snapshot_hour, account_id) "
        "WHERE h.snapshot_hour = $hour ORDER BY h.account_id",
        {"hour": hour},
    )
    if not rows and not snapshot_built(con, hour):
        raise NotInSnapshotError(
            f"No account hierarchy in the snapshot of {hour} (is that hour materialized?)."
        )
    by_id = {row["account_id"]: row | {"seen": True} for row in rows}
    children: dict[str | None, list[str]] = {}
    for row in rows:
        tree_parent = row["path"][-2] if len(row["path"]) > 1 else None
        if tree_parent is not None and tree_parent not in by_id:
            by_id[tree_parent] = dict.fromkeys(row) | {"account_id": tree_parent, "seen": False}
            children.setdefault(None, []).append(tree_parent)
        children.setdefault(tree_parent, []).append(row["account_id"])
    if root is not None and root not in by_id:
        raise NotInSnapshotError(f"account {root!r} is not in the snapshot of {hour}.")
    nodes: list[dict[str, Any]] = []
    stack = [(account, 0) for account in reversed(sorted(children.get(None, [])))]
    if root is not None:
        stack = [(root, 0)]
    while stack:
        account, level = stack.pop()
        nodes.append(by_id[account] | {"level": level})
        stack.extend((child, level + 1) for child in reversed(sorted(children.get(account, []))))
    return nodes
