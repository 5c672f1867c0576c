"""Fill rate and distribution of one trait column at one snapshot hour, as Dagster metadata."""

import re
from datetime import datetime

import dagster as dg
import duckdb
import sqlglot.expressions as exp

from account_hierarchy.metadata import markdown_table

# A number column's type (a list's ends with `[]`, a fixed-size array's with `[N]`).
NUMERIC_TYPE = re.compile(
    r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL(\(\d+,\d+\))?)$"
)


def profile_column(
    con: duckdb.DuckDBPyConnection, table: str, column: str, hour: datetime | None
) -> dict:
    """`fill_rate` (share of entities whose value is not null, zero or empty) and, for numbers,
    min / mean / median / max (as doubles, NaN and infinities being no values, as they travel
    as null), else the most common values."""
    if hour is None:
        return {}
    quoted = exp.to_identifier(column, quoted=True).sql("duckdb")
    kind = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = $t "
        "AND column_name = $c",
        {"t": table, "c": column},
    ).fetchone()[0]
    params = {"hour": hour}
    where = f"FROM {table} WHERE snapshot_hour = $hour"
    number = f"CASE WHEN isfinite({quoted}::DOUBLE) THEN {quoted}::DOUBLE END"
    listed = kind.endswith("]")
    numeric = bool(NUMERIC_TYPE.match(kind))
    if listed:
        filled = f"len({quoted}) > 0"
    elif numeric:
        filled = f"coalesce({number} <> 0, false)"
    elif kind == "VARCHAR":
        filled = f"coalesce({quoted} <> '', false)"
    else:
        filled = f"{quoted} IS NOT NULL"
    entities, fill_rate = con.execute(
        f"SELECT count(*), coalesce(avg(CASE WHEN {filled} THEN 1 ELSE 0 END), 0) {where}",
        params,
    ).fetchone()
    metadata: dict = {"entities": entities, "fill_rate": float(fill_rate)}
    if numeric:
        low, mean, median, high = con.execute(
            f"SELECT min({number}), avg({number}), median({number}), max({number}) {where}",
            params,
        ).fetchone()
        for name, value in (("min", low), ("mean", mean), ("median", median), ("max", high)):
            metadata[name] = dg.MetadataValue.float(float(value)) if value is not None else None
        return {key: value for key, value in metadata.items() if value is not None}
    values = f"unnest({quoted})" if listed else quoted
    top = con.execute(
        f"SELECT CAST(v AS VARCHAR), count(*) AS n FROM (SELECT {values} AS v {where}) "
        "WHERE v IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10",
        params,
    ).fetchall()
    metadata["top_values"] = dg.MetadataValue.md(
        markdown_table(["value", "entities"], top) if top else "No values."
    )
    return metadata
