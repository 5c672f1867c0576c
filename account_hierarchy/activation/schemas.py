"""The pandera model of `activation_diffs` rows."""

import duckdb
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandera.ibis as pa

from account_hierarchy.validation import Rule, build_schema, ibis_table, unique, validate_table

RULES = [
    unique("snapshot_hour", "kind", "name", "entity_id"),
    Rule("kind is audience or trait", lambda t: t.kind.isin(["audience", "trait"])),
    Rule(
        "audiences enter or exit, traits change",
        lambda t: (
            ((t.kind == "audience") & t.change.isin(["entered", "exited"]))
            | ((t.kind == "trait") & (t.change == "changed"))
        ),
    ),
]
SCHEMA = build_schema(
    "activation_diffs",
    {
        "snapshot_hour": pa.Column(dt.Timestamp(scale=6)),
        "kind": pa.Column(dt.string),
        "name": pa.Column(dt.string),
        "entity_type": pa.Column(dt.string),
        "entity_id": pa.Column(dt.string),
        "change": pa.Column(dt.string),
        "old_value": pa.Column(nullable=True),
        "new_value": pa.Column(nullable=True),
    },
    RULES,
)


def validate_diffs(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Validate rows about to be written to `activation_diffs`."""
    validate_diff_rows(ibis_table(con, table))


def validate_diff_rows(rows: ir.Table) -> None:
    """Validate `activation_diffs` rows, on whichever engine holds them."""
    validate_table(SCHEMA, rows, RULES, ["snapshot_hour", "name", "entity_id"])
