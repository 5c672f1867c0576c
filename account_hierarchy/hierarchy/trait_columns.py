"""Typed columns for traits: every trait key becomes a column of a sensible type.

Entity tables keep all traits in a `traits` JSON column (nothing is dropped, values keep their
JSON types) and, beside it, one typed column per trait key, so that `employees` is a number and
`industry` a string to SQL traits and audience conditions. The type of a key is inferred from
every value it ever had in the events:

| values | column type |
| --- | --- |
| integers | BIGINT (an integer beyond its range is null there, kept in `traits`) |
| numbers (some not integers) | DOUBLE |
| true / false | BOOLEAN |
| strings that all read as ISO-8601 timestamps | TIMESTAMP (UTC) |
| strings | VARCHAR |
| anything mixed, objects or arrays | JSON |

Null values do not count. A key gets a column when it is a plain identifier (letters, digits,
underscores, not starting with a digit), does not clash (ignoring case) with the table's own
columns or an earlier key (in sorted order, over every key ever seen), and the table has fewer
than `MAX_TRAIT_COLUMNS` trait columns; every other key lives in `traits` only. Typed columns
are a projection of `traits`, so when a key's type widens the column is rebuilt from `traits`
for every stored row, and a key that loses its column to a new one (an earlier key clashing
with it, or one taking its place under the limit) has its column dropped: the columns depend
only on the keys in the events, not on the order of the runs that brought them.
"""

import re
from collections.abc import Iterable, Sequence

import duckdb
import sqlglot.expressions as exp

from account_hierarchy.hierarchy.tiles import (
    CUSTOM_TRAIT_KEY_TILES,
    refresh_hierarchy_tiles,
)
from account_hierarchy.moments import utc_expression

MAX_TRAIT_COLUMNS = 200
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # (whole keys: `fullmatch`)

# Every key of the calls of one type, its values' JSON types and whether all its strings are
# timestamps, over every hour (from the custom trait tiles).
TYPE_OF_KEYS_SQL = f"""
SELECT key,
       list_distinct(flatten(list(json_types) FILTER (WHERE json_types IS NOT NULL)))
           AS json_types,
       bool_and(all_timestamps) AS all_timestamps
FROM {CUSTOM_TRAIT_KEY_TILES}
WHERE message_type = $type
GROUP BY key
ORDER BY key
"""


def column_type(json_types: Sequence[str] | None, all_timestamps: bool | None) -> str:
    """The column type for a key whose non-null values had these JSON types."""
    kinds = set(json_types or [])
    if not kinds:
        return "VARCHAR"
    if kinds <= {"BIGINT", "UBIGINT"}:
        return "BIGINT"
    if kinds <= {"BIGINT", "UBIGINT", "DOUBLE"}:
        return "DOUBLE"
    if kinds == {"BOOLEAN"}:
        return "BOOLEAN"
    if kinds == {"VARCHAR"}:
        return "TIMESTAMP" if all_timestamps else "VARCHAR"
    return "JSON"


def infer_trait_columns(
    con: duckdb.DuckDBPyConnection, message_type: str, reserved: Iterable[str]
) -> dict[str, str]:
    """Trait key -> column type for the traits of `message_type` calls (see module docstring),
    from the custom trait key tiles."""
    refresh_hierarchy_tiles(con)
    return choose_trait_columns(
        con.execute(TYPE_OF_KEYS_SQL, {"type": message_type}).fetchall(), reserved
    )


def choose_trait_columns(
    key_types: Iterable[tuple[str, Sequence[str] | None, bool | None]], reserved: Iterable[str]
) -> dict[str, str]:
    """Trait key -> column type from the rows of `TYPE_OF_KEYS_SQL` (key, JSON types, all
    timestamps), in key order, for the keys that get a column."""
    taken = {name.lower() for name in reserved}
    columns: dict[str, str] = {}
    for key, json_types, all_timestamps in key_types:
        if len(columns) >= MAX_TRAIT_COLUMNS or not _IDENTIFIER.fullmatch(key):
            continue
        if key.lower() in taken:
            continue
        taken.add(key.lower())
        columns[key] = column_type(json_types, all_timestamps)
    return columns


def extract(key: str, column_type_name: str, source: str = "traits") -> exp.Expression:
    """The expression reading one trait, typed, out of the JSON column `source`."""
    arguments = [exp.column(source), exp.Literal.string(key)]
    text = exp.Anonymous(this="json_extract_string", expressions=arguments)
    value = exp.Anonymous(this="json_extract", expressions=arguments)
    if column_type_name == "VARCHAR":
        return text
    if column_type_name == "JSON":  # (a trait set to null is null, not the JSON `null`)
        return exp.Nullif(this=value, expression=exp.Literal.string("null"))
    if column_type_name == "TIMESTAMP":
        return utc_expression(text)
    return exp.TryCast(this=value, to=exp.DataType.build(column_type_name))


def typed_select(columns: dict[str, str], source: str = "traits") -> list[exp.Expression]:
    """`extract(...) AS "key"` for every trait column."""
    return [
        exp.alias_(extract(key, kind, source), exp.to_identifier(key, quoted=True))
        for key, kind in columns.items()
    ]


def sync_table_columns(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict[str, str],
    own_columns: Iterable[str],
) -> None:
    """Give `table` exactly the trait `columns` beside its `own_columns`: drop the trait columns
    no longer chosen (a key that lost its column to a case clash or the column limit), retype
    those whose type changed and add the missing ones, from `traits`.

    Within one transaction DuckDB commits several column changes of a table only when no
    column is updated between them: dropped columns go first, retyped columns are converted by
    their `ALTER`, and the new ones are all filled by one `UPDATE` at the end."""
    existing = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = $table",
            {"table": table},
        ).fetchall()
    )
    for name in existing.keys() - columns.keys() - set(own_columns):
        quoted = exp.to_identifier(name, quoted=True).sql("duckdb")
        con.execute(f"ALTER TABLE {table} DROP COLUMN {quoted}")
        del existing[name]
    added = []
    for key, kind in columns.items():
        if existing.get(key) == kind:
            continue
        identifier = exp.to_identifier(key, quoted=True)
        quoted = identifier.sql("duckdb")
        if key in existing:
            using = extract(key, kind).sql("duckdb")
            con.execute(
                f"ALTER TABLE {table} ALTER COLUMN {quoted} SET DATA TYPE {kind} USING {using}"
            )
        else:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted} {kind}")
            added.append(exp.EQ(this=exp.column(identifier), expression=extract(key, kind)))
    if added:
        con.execute(exp.Update(this=exp.to_table(table), expressions=added).sql("duckdb"))
