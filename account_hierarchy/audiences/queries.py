"""Reading and explaining audiences for the CLI: stored members, previews, explanations."""

import json
from datetime import datetime, timedelta
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import pyarrow as pa

from account_hierarchy.audiences.describe import describe
from account_hierarchy.audiences.evaluate import (
    Evaluated,
    Evaluator,
    Leaf,
    NotComputedError,
    require_snapshots,
)
from account_hierarchy.audiences.memberships import reason_texts
from account_hierarchy.catalog.audience_models import AnyAccount, Quantified
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.hierarchy.queries import NotInSnapshotError, latest_snapshot_hour
from account_hierarchy.traits.compute import newest_trait_hours
from account_hierarchy.traits.sql_traits import closest_name
from account_hierarchy.warehouse import rows_if_table_exists, table_names

SAMPLE_SIZE = 10


def members(con: duckdb.DuckDBPyConnection, audience: str, hour: datetime) -> list[dict]:
    """The stored members of an audience at a snapshot hour, with their reasons. An audience
    not materialized for that hour (or never) is an error, not an empty audience."""
    params = {"name": audience, "hour": hour}
    rows = rows_if_table_exists(
        con,
        "SELECT entity_id, entity_type, reason FROM audience_memberships "
        "WHERE audience = $name AND snapshot_hour = $hour ORDER BY entity_id",
        params,
    )
    if not rows and not _materialized(con, audience, hour):
        raise NotInSnapshotError(
            f"Audience {audience!r} was not materialized for {hour:%Y-%m-%d %H:00} UTC"
            f"{_unknown(con, audience)}."
        )
    return [
        {"entity_id": entity_id, "entity_type": entity_type, "audience": audience,
         "snapshot_hour": hour, "reason": json.loads(reason)}
        for entity_id, entity_type, reason in rows
    ]  # fmt: skip


def _materialized(con: duckdb.DuckDBPyConnection, audience: str, hour: datetime) -> bool:
    """Whether the audience was materialized for the hour (an empty hour is only in
    `audience_hours`)."""
    return bool(rows_if_table_exists(
        con, "SELECT 1 FROM audience_hours WHERE audience = $name AND snapshot_hour = $hour",
        {"name": audience, "hour": hour},
    ))  # fmt: skip


def _unknown(con: duckdb.DuckDBPyConnection, audience: str) -> str:
    """For a name no audience materialized so far has (a typo, or an audience not built yet):
    ` (did you mean 'y'?)` or ` (known: a, b)`; else nothing."""
    query = "SELECT DISTINCT audience FROM {table}"
    names = {name for table in ("audience_hours", "audience_memberships")
             for (name,) in rows_if_table_exists(con, query.format(table=table), {})}  # fmt: skip
    if audience in names or not names:  # (none at all: "not materialized" says it all)
        return ""
    return f" ({closest_name('materialized audience', audience, sorted(names))})"


def _stored_member(
    con: duckdb.DuckDBPyConnection, audience: str, entity_id: str, hour: datetime
) -> bool | None:
    """Whether the membership stored for the hour lists the entity; None if the audience was
    not materialized for that hour."""
    listed = rows_if_table_exists(
        con,
        "SELECT 1 FROM audience_memberships WHERE audience = $name AND snapshot_hour = $hour "
        "AND entity_id = $id",
        {"name": audience, "hour": hour, "id": entity_id},
    )
    return bool(listed) or (False if _materialized(con, audience, hour) else None)


def newest_member_hour(con: duckdb.DuckDBPyConnection, audience: str) -> datetime:
    """The newest hour the audience was materialized for."""
    params = {"name": audience}
    hours = rows_if_table_exists(
        con,
        "SELECT max(snapshot_hour) FROM (SELECT snapshot_hour FROM audience_hours "
        "WHERE audience = $name UNION ALL SELECT snapshot_hour FROM audience_memberships "
        "WHERE audience = $name)",
        params,
    )
    if not hours or hours[0][0] is None:
        raise NotInSnapshotError(
            f"Audience {audience!r} was not materialized for any hour yet{_unknown(con, audience)}."
        )
    return hours[0][0]


def newest_evaluable_hour(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, audience: str
) -> datetime:
    """The newest hour every snapshot table the audience reads has, and every trait it tests
    was computed for by its definition (for a preview of it). A table built but still without
    rows (no membership yet, say) holds for any hour, as `require_snapshots` has it, and does
    not count."""
    evaluated = _evaluator(con, catalog, datetime(2000, 1, 1)).audience(audience)
    tables = sorted(evaluated.tables)
    existing = table_names(con)
    newest = []
    for table in tables:
        if table in existing and not con.execute(f"FROM {table} LIMIT 1").fetchall():
            continue  # (built, without rows yet)
        newest.append(latest_snapshot_hour(con, (table,)))
    if not newest:
        raise NotInSnapshotError(f"No snapshot in {', '.join(tables)} yet: materialize them.")
    computed = newest_trait_hours(con, catalog)
    tracked = {entity for entity, _ in computed}
    for entity, trait in sorted(evaluated.traits):
        hour = computed.get((entity, trait))
        if entity in tracked and hour is None:
            raise NotComputedError(f"{entity} trait {trait!r} has not been computed for any "
                                   "hour yet (by its current definition): materialize the "
                                   "traits first.")  # fmt: skip
        newest += [hour] if entity in tracked else []
    return min(newest)


def _fetch(con: duckdb.DuckDBPyConnection, expr: ir.Table) -> pa.Table:
    """An evaluation's rows as DuckDB gives them to Arrow (every type kept, JSON as its text),
    for `reason_texts` to describe as a materialization does."""
    return con.sql(ibis.to_sql(expr, dialect="duckdb")).to_arrow_table()


def _evaluator(con: duckdb.DuckDBPyConnection, catalog: Catalog, hour: datetime) -> Evaluator:
    return Evaluator(ibis.duckdb.from_connection(con), catalog, hour)


def preview(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, audience: str, hour: datetime
) -> dict[str, Any]:
    """Evaluate an audience without writing: how many qualify, whom they reach, a sample."""
    try:
        definition = catalog.audience(audience)
    except KeyError:
        raise NotInSnapshotError(f"No audience {audience!r} in {catalog.folder}.") from None
    evaluated = _evaluator(con, catalog, hour).audience(audience)
    require_snapshots(ibis.duckdb.from_connection(con), evaluated, hour, hour + timedelta(hours=1))
    members = _fetch(con, evaluated.table.filter(evaluated.table.member).order_by("entity_id"))
    ids = members["entity_id"].to_pylist()
    reached_entity = "user" if definition.entity == "account" else "account"
    column = "account_id" if definition.entity == "account" else "user_id"
    other = "user_id" if definition.entity == "account" else "account_id"
    con.register("preview_members", members.select(["entity_id"]))
    (reached,) = con.execute(
        f"SELECT count(DISTINCT {other}) FROM account_memberships WHERE snapshot_hour = $hour "
        f"AND {column} IN (SELECT entity_id FROM preview_members)",
        {"hour": hour},
    ).fetchone()
    con.unregister("preview_members")
    sample = members.slice(0, SAMPLE_SIZE)
    return {
        "audience": audience,
        "entity": definition.entity,
        "snapshot_hour": hour,
        "condition": describe(definition.where),
        "members": len(ids),
        f"{reached_entity}s_reached": reached,
        "sample": [
            {"entity_id": entity_id, **json.loads(reason)}
            for entity_id, reason in zip(
                sample["entity_id"].to_pylist(), reason_texts(evaluated, sample), strict=True
            )
        ],
    }


def explain(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    audience: str,
    entity_id: str,
    hour: datetime,
) -> dict[str, Any]:
    """Why an entity is or is not a member, condition by condition; for quantified conditions
    the users that satisfied the user condition. `stored_member` is what the membership
    stored for the hour says (None if not materialized): events loaded or definitions changed
    since can change the answer until the hour is materialized again."""
    evaluator = _evaluator(con, catalog, hour)
    definition = catalog.audience(audience)
    evaluated = evaluator.audience(audience)
    require_snapshots(ibis.duckdb.from_connection(con), evaluated, hour, hour + timedelta(hours=1))
    row = _fetch(con, evaluated.table.filter(evaluated.table.entity_id == entity_id))
    if row.num_rows == 0:
        raise NotInSnapshotError(
            f"{definition.entity} {entity_id!r} is not in the snapshot of {hour}."
        )
    (reason,) = _reasons(evaluator, evaluated, row)
    return {
        "audience": audience,
        "entity_type": definition.entity,
        "entity_id": entity_id,
        "snapshot_hour": hour,
        "member": bool(row["member"][0].as_py()),
        "stored_member": _stored_member(con, audience, entity_id, hour),
        "condition": describe(definition.where),
        **reason,
    }


def _reasons(evaluator: Evaluator, evaluated: Evaluated, rows: pa.Table) -> list[dict[str, Any]]:
    """The reasons of `rows` of an evaluated condition, each quantified condition with the
    users that satisfied it, and each `account:` condition with the reasons of every account
    of the user (the same, one level down)."""
    reasons = [json.loads(text) for text in reason_texts(evaluated, rows)]
    for entity_id, reason in zip(rows["entity_id"].to_pylist(), reasons, strict=True):
        for leaf, entry in zip(evaluated.leaves, reason["conditions"], strict=True):
            if isinstance(leaf.condition, Quantified):
                entry["satisfying_users"] = _satisfying_users(evaluator, leaf, entity_id)
            elif isinstance(leaf.condition, AnyAccount):
                entry["accounts_checked"] = _accounts_checked(evaluator, leaf, entity_id)
    return reasons


def _accounts_checked(evaluator: Evaluator, leaf: Leaf, user_id: str) -> list[dict[str, Any]]:
    """For an `account:` condition, each of the user's accounts: whether it satisfies the
    account condition, and why."""
    accounts = evaluator.evaluate(leaf.id, "account", leaf.condition.account)
    members = evaluator.memberships()
    mine = members.filter(members.user_id == user_id).select(account=members.account_id)
    table = accounts.table
    joined = table.join(mine, table.entity_id == mine.account).drop("account")
    rows = _fetch(evaluator.backend.con, joined.order_by("entity_id"))
    return [
        {"account_id": str(account_id), "held": bool(held), **reason}
        for account_id, held, reason in zip(
            rows["entity_id"].to_pylist(), rows["member"].to_pylist(),
            _reasons(evaluator, accounts, rows), strict=True,
        )
    ]  # fmt: skip


def _satisfying_users(evaluator: Evaluator, leaf: Leaf, account_id: str) -> list[str]:
    rows = evaluator.account_users(leaf.condition, leaf.id)
    rows = rows.filter(rows.account_id == account_id, rows.member)
    return sorted(str(user_id) for user_id in rows.select("user_id").execute().user_id)
