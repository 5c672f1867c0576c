"""Reading trait values for the CLI (JSON columns as the values they hold)."""

from datetime import datetime
from typing import Any

import duckdb

from account_hierarchy.hierarchy.queries import NotInSnapshotError
from account_hierarchy.json_text import fetch_rows
from account_hierarchy.traits.compute import TRAIT_TABLES
from account_hierarchy.traits.schemas import ID_COLUMNS
from account_hierarchy.warehouse import rows_if_table_exists


def trait_rows(
    con: duckdb.DuckDBPyConnection, entity: str, hour: datetime, entity_id: str | None = None
) -> list[dict[str, Any]]:
    """Trait rows of one snapshot hour, for every entity or one, with the traits computed for
    that hour (a trait added later has a column, without values, at hours it was not)."""
    table, id_column = TRAIT_TABLES[entity], ID_COLUMNS[entity]
    params: dict[str, Any] = {"hour": hour}
    query = f"SELECT * FROM {table} WHERE snapshot_hour = $hour"
    if entity_id is not None:
        query += f" AND {id_column} = $id"
        params["id"] = entity_id
    cursor = con.execute(f"{query} ORDER BY {id_column}", params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in fetch_rows(cursor)]
    computed = _computed_traits(con, entity, hour)
    if not rows and not (entity_id is None and computed):
        what = f"{entity} {entity_id!r}" if entity_id else f"any {entity}"
        raise NotInSnapshotError(f"No traits of {what} in the snapshot of {hour}.")
    if computed is None:
        return rows
    kept = {id_column, "snapshot_hour", *computed}
    return [{name: value for name, value in row.items() if name in kept} for row in rows]


def _computed_traits(
    con: duckdb.DuckDBPyConnection, entity: str, hour: datetime
) -> set[str] | None:
    """The entity's trait columns computed for the hour, as `trait_hours` records (empty for
    an hour not computed; an hour before the first account, say, has no rows and is no
    error); None when no hour of the entity is recorded (trait tables built before
    `trait_hours` was kept)."""
    recorded = rows_if_table_exists(
        con,
        "SELECT trait FROM trait_hours WHERE entity = $entity AND snapshot_hour = $hour "
        "UNION ALL (SELECT NULL FROM trait_hours WHERE entity = $entity LIMIT 1)",
        {"entity": entity, "hour": hour},
    )
    if not recorded:
        return None
    return {trait for (trait,) in recorded if trait is not None}
