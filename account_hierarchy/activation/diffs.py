"""Activation diffs: per hour, who entered and exited each synced audience since the previous
hour's snapshot, and which synced traits changed value (`activation_diffs`).

A previous hour that has no snapshot counts as empty: everyone enters.
"""

from datetime import datetime, timedelta

import duckdb

from account_hierarchy.activation.schemas import validate_diffs
from account_hierarchy.catalog.loader import Catalog
from account_hierarchy.partitions import hours_of

DIFFS_DDL = """
CREATE TABLE IF NOT EXISTS activation_diffs (
    snapshot_hour TIMESTAMP NOT NULL,
    kind VARCHAR NOT NULL,          -- audience or trait
    name VARCHAR NOT NULL,
    entity_type VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    change VARCHAR NOT NULL,        -- entered, exited or changed
    old_value JSON,
    new_value JSON
)
"""

AUDIENCE_DIFF_SQL = """
WITH now AS (SELECT entity_id, entity_type FROM audience_memberships
             WHERE audience = $name AND snapshot_hour = $hour),
before AS (SELECT entity_id, entity_type FROM audience_memberships
           WHERE audience = $name AND snapshot_hour = $previous)
SELECT CAST($hour AS TIMESTAMP), 'audience', $name, coalesce(n.entity_type, b.entity_type),
       coalesce(n.entity_id, b.entity_id),
       CASE WHEN b.entity_id IS NULL THEN 'entered' ELSE 'exited' END,
       CAST(b.entity_id IS NOT NULL AS VARCHAR)::JSON,
       CAST(n.entity_id IS NOT NULL AS VARCHAR)::JSON
FROM now AS n FULL JOIN before AS b USING (entity_id)
WHERE n.entity_id IS NULL OR b.entity_id IS NULL
"""

TRAIT_DIFF_SQL = """
WITH now AS (SELECT {id} AS entity_id, to_json("{trait}") AS value FROM {table}
             WHERE snapshot_hour = $hour),
before AS (SELECT {id} AS entity_id, to_json("{trait}") AS value FROM {table}
           WHERE snapshot_hour = $previous)
SELECT CAST($hour AS TIMESTAMP), 'trait', $name, $entity, coalesce(n.entity_id, b.entity_id),
       'changed', b.value, n.value
FROM now AS n FULL JOIN before AS b USING (entity_id)
WHERE n.value IS DISTINCT FROM b.value AND NOT (n.value IS NULL AND b.value IS NULL)
"""


def synced(catalog: Catalog) -> tuple[list[str], dict[str, str]]:
    """The audiences and traits (trait -> entity) some destination receives."""
    audiences = sorted({a for d in catalog.destinations for a in d.destination.audiences})
    traits = {}
    for located in catalog.destinations:
        for trait in located.destination.traits:
            entity = "account" if trait in catalog.trait_columns("account") else "user"
            traits[trait] = entity
    return audiences, traits


def build_diffs(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, start: datetime, end: datetime
) -> dict[str, int]:
    """Write `activation_diffs` for every hour of `[start, end)`; return counts per change."""
    con.execute(DIFFS_DDL)
    con.execute("CREATE OR REPLACE TEMP TABLE new_diffs AS SELECT * FROM activation_diffs LIMIT 0")
    audiences, traits = synced(catalog)
    for hour in hours_of(start, end):
        params = {"hour": hour, "previous": hour - timedelta(hours=1)}
        for audience in audiences:
            con.execute(f"INSERT INTO new_diffs {AUDIENCE_DIFF_SQL}", params | {"name": audience})
        for trait, entity in traits.items():
            sql = TRAIT_DIFF_SQL.format(id=f"{entity}_id", trait=trait, table=f"{entity}_traits")
            con.execute(f"INSERT INTO new_diffs {sql}",
                        params | {"name": trait, "entity": entity})  # fmt: skip
    validate_diffs(con, "new_diffs")
    con.execute(
        "DELETE FROM activation_diffs WHERE snapshot_hour >= $start AND snapshot_hour < $end",
        {"start": start, "end": end},
    )
    con.execute("INSERT INTO activation_diffs SELECT * FROM new_diffs ORDER BY ALL")
    counts = dict(con.execute("SELECT change, count(*) FROM new_diffs GROUP BY 1").fetchall())
    return {change: counts.get(change, 0) for change in ("entered", "exited", "changed")}
