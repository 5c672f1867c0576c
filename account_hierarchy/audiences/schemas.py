"""The pandera model of `audience_memberships` rows."""

import duckdb
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandera.ibis as pa

from account_hierarchy.validation import Rule, build_schema, ibis_table, unique, validate_table

RULES = [
    unique("snapshot_hour", "audience", "entity_id"),
    Rule("entity_type is account or user", lambda t: t.entity_type.isin(["account", "user"])),
    Rule("entity_id is not empty", lambda t: t.entity_id.length() > 0),
]
SCHEMA = build_schema(
    "audience_memberships",
    {
        "snapshot_hour": pa.Column(dt.Timestamp(scale=6)),
        "audience": pa.Column(dt.string),
        "entity_type": pa.Column(dt.string),
        "entity_id": pa.Column(dt.string),
        "reason": pa.Column(),
    },
    RULES,
)


def validate_memberships(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Validate rows about to be written to `audience_memberships`."""
    validate_membership_rows(ibis_table(con, table))


def validate_membership_rows(rows: ir.Table) -> None:
    """Validate `audience_memberships` rows, on whichever engine holds them."""
    validate_table(SCHEMA, rows, RULES, ["audience", "snapshot_hour", "entity_id"])
