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
    """Trait rows of one snapshot hour, for every entity or one."""
    table, id_column = TRAIT_TABLES[entity], ID_COLUMNS[entity]
    params: dict[str, Any] = {"hour": hour}
    query = f"SELECT * FROM {table} WHERE snapshot_hour = $hour"
    if entity_id is not None:
        query += f" AND {id_column} = $id"
        params["id"] = entity_id
    cursor = con.execute(f"{query} ORDER BY {id_column}", params)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in fetch_rows(cursor)]
    if not rows and not (entity_id is None and _computed(con, entity, hour)):
        what = f"{entity} {entity_id!r}" if entity_id else f"any {entity}"
        raise NotInSnapshotError(f"No traits of {what} in the snapshot of {hour}.")
    return rows


def _computed(con: duckdb.DuckDBPyConnection, entity: str, hour: datetime) -> bool:
    """Whether the entity's traits were computed for the hour (an hour before the first
    account, say, has none to show, and is no error)."""
    return bool(rows_if_table_exists(
        con, "SELECT 1 FROM trait_hours WHERE entity = $entity AND snapshot_hour = $hour LIMIT 1",
        {"entity": entity, "hour": hour},
    ))  # fmt: skip
