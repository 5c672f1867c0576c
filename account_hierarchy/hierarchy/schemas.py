"""pandera models of the hierarchy tables; trait columns are added from their inferred types."""

from datetime import timedelta

import duckdb
import ibis.expr.datatypes as dt
import pandera.ibis as pa

from account_hierarchy.validation import Rule, build_schema, ibis_table, unique, validate_table

TIMESTAMP = dt.Timestamp(scale=6)
COLUMN_DTYPES = {
    "BIGINT": dt.int64,
    "DOUBLE": dt.float64,
    "BOOLEAN": dt.boolean,
    "VARCHAR": dt.string,
    "TIMESTAMP": TIMESTAMP,
    "JSON": None,
}


def _seen_in_order(first: str, last: str) -> Rule:
    return Rule(
        f"{first} <= {last} < end of snapshot hour",
        lambda t: (t[first] <= t[last]) & (t[last] < t.snapshot_hour + timedelta(hours=1)),
    )


TABLES = {
    "users": (
        {
            "snapshot_hour": pa.Column(TIMESTAMP),
            "user_id": pa.Column(dt.string),
            "first_seen_at": pa.Column(TIMESTAMP),
            "last_seen_at": pa.Column(TIMESTAMP),
            "traits": pa.Column(),
        },
        [unique("snapshot_hour", "user_id"), _seen_in_order("first_seen_at", "last_seen_at")],
        ["snapshot_hour", "user_id"],
    ),
    "accounts": (
        {
            "snapshot_hour": pa.Column(TIMESTAMP),
            "account_id": pa.Column(dt.string),
            "first_seen_at": pa.Column(TIMESTAMP),
            "last_seen_at": pa.Column(TIMESTAMP),
            "user_count": pa.Column(dt.int64),
            "parent_account_id": pa.Column(dt.string, nullable=True),
            "traits": pa.Column(),
        },
        [
            unique("snapshot_hour", "account_id"),
            _seen_in_order("first_seen_at", "last_seen_at"),
            Rule("user_count >= 0", lambda t: t.user_count >= 0),
        ],
        ["snapshot_hour", "account_id"],
    ),
    "account_memberships": (
        {
            "snapshot_hour": pa.Column(TIMESTAMP),
            "user_id": pa.Column(dt.string),
            "account_id": pa.Column(dt.string),
            "first_associated_at": pa.Column(TIMESTAMP),
            "last_associated_at": pa.Column(TIMESTAMP),
        },
        [
            unique("snapshot_hour", "user_id", "account_id"),
            _seen_in_order("first_associated_at", "last_associated_at"),
        ],
        ["snapshot_hour", "user_id", "account_id"],
    ),
    "account_hierarchy": (
        {
            "snapshot_hour": pa.Column(TIMESTAMP),
            "account_id": pa.Column(dt.string),
            "parent_account_id": pa.Column(dt.string, nullable=True),
            "ultimate_parent_id": pa.Column(dt.string),
            "depth": pa.Column(dt.int32),
            "path": pa.Column(),
            "in_cycle": pa.Column(dt.boolean),
            "parent_missing": pa.Column(dt.boolean),
        },
        [
            unique("snapshot_hour", "account_id"),
            Rule("depth = length of path - 1", lambda t: t.depth == t.path.length() - 1),
            Rule(
                "path runs from ultimate parent to the account",
                lambda t: (t.path[0] == t.ultimate_parent_id) & (t.path[-1] == t.account_id),
            ),
            Rule(
                "an account is its own ancestor only when flagged in_cycle",
                lambda t: t.in_cycle | ~t.path[:-1].contains(t.account_id),
            ),
            Rule(
                "cycle members are their own root",
                lambda t: ~t.in_cycle | ((t.ultimate_parent_id == t.account_id) & (t.depth == 0)),
            ),
        ],
        ["snapshot_hour", "account_id"],
    ),
}


def validate_entities(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows: str,
    trait_columns: dict[str, str] | None = None,
) -> None:
    """Validate `rows` (about to replace a window of `table`) against the table's model."""
    columns, rules, label = TABLES[table]
    columns = dict(columns)
    for key, kind in (trait_columns or {}).items():
        columns[key] = pa.Column(COLUMN_DTYPES[kind], nullable=True)
    schema = build_schema(table, columns, rules)
    validate_table(schema, ibis_table(con, rows), rules, label)


def stored_trait_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """The typed trait columns a stored entity table has (name -> column type)."""
    fixed = set(TABLES[table][0])
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t",
        {"t": table},
    ).fetchall()
    return {name: kind for name, kind in rows if name not in fixed and kind in COLUMN_DTYPES}
