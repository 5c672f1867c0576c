"""Validate warehouse frames with pandera, reporting each broken rule with the rows that break it.

Frames are Ibis tables, so pandera's Ibis backend runs the checks inside the engine (DuckDB)
without pulling rows into pandas. Row-level rules are written as `Rule`s: a name and an Ibis
boolean expression over the table. The same expression finds the offending rows for the error.
"""

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandera.ibis as pa
from pandera.errors import SchemaErrors

ROWS_SHOWN = 5


@dataclass(frozen=True)
class Rule:
    """A row-level rule: `holds(table)` is True for every row that satisfies it."""

    name: str
    holds: Callable[[ir.Table], ir.BooleanColumn]


@dataclass(frozen=True)
class TableRule:
    """A rule over the whole table (e.g. uniqueness); `offenders` lists the rows breaking it."""

    name: str
    holds: Callable[[ir.Table], ir.BooleanScalar]
    offenders: Callable[[ir.Table], ir.Table]


def unique(*keys: str) -> TableRule:
    """One row per combination of `keys`."""

    def repeated(t: ir.Table) -> ir.Table:
        counts = t.group_by(list(keys)).aggregate(copies=t.count())
        return counts.filter(counts.copies > 1)

    return TableRule(
        f"one row per {', '.join(keys)}",
        lambda t: repeated(t).count() == 0,
        lambda t: t.semi_join(repeated(t), list(keys)),
    )


class FrameValidationError(ValueError):
    """A frame broke its pandera schema; the message names each rule and offending rows."""


def build_schema(
    name: str,
    columns: dict[str, pa.Column],
    rules: Sequence[Rule | TableRule] = (),
) -> pa.DataFrameSchema:
    """A pandera schema whose checks are the given rules, each named after its rule."""
    checks = [pa.Check(_check_fn(rule), name=rule.name) for rule in rules]
    return pa.DataFrameSchema(columns, checks=checks, name=name, strict=True)


def _check_fn(rule: Rule | TableRule) -> Callable:
    # Nulls count as passing: nullability is the columns' business.
    if isinstance(rule, TableRule):
        return lambda data: rule.holds(data.table)
    return lambda data: rule.holds(data.table).fill_null(True)


def validate_table(
    schema: pa.DataFrameSchema,
    table: ir.Table,
    rules: Sequence[Rule | TableRule],
    row_label: Sequence[str],
) -> None:
    """Validate `table`; on failure raise `FrameValidationError` naming each failed rule and up
    to five offending rows, identified by the `row_label` columns.

    Non-nullable columns are checked together in one query (pandera asks once per column,
    which costs a job per column on Spark); pandera checks the rest."""
    table = _microsecond_timestamps(table)
    by_name = {rule.name: rule for rule in rules}
    cases = [{"check": "not_nullable", "column": column, "failure_case": None}
             for column in _columns_with_nulls(schema, table)]  # fmt: skip
    try:
        _nulls_allowed(schema).validate(table, lazy=True)
    except SchemaErrors as errors:
        cases += errors.failure_cases.to_dict("records")
    problems = []
    for case in cases:
        problem = _describe(case, by_name, table, row_label)
        if problem and problem not in problems:
            problems.append(problem)
    if problems:
        lines = [f"{schema.name} failed validation:", *(f"- {p}" for p in problems)]
        raise FrameValidationError("\n".join(lines)) from None


def _nulls_allowed(schema: pa.DataFrameSchema) -> pa.DataFrameSchema:
    """A copy of the schema whose columns may hold nulls (checked beforehand)."""
    columns = {}
    for name, column in schema.columns.items():
        columns[name] = copy.copy(column)
        columns[name].nullable = True
    relaxed = copy.copy(schema)
    relaxed.columns = columns
    return relaxed


def _missing(column: ir.Column) -> ir.BooleanColumn:
    """Null, or NaN for floating point numbers (as pandera counts them)."""
    return column.isnull() | column.isnan() if column.type().is_floating() else column.isnull()


def _columns_with_nulls(schema: pa.DataFrameSchema, table: ir.Table) -> list[str]:
    """The schema's non-nullable columns that hold a null, found in one aggregation."""
    required = [name for name, column in schema.columns.items()
                if not column.nullable and name in table.columns]  # fmt: skip
    if not required:
        return []
    counts = table.aggregate(
        **{name: _missing(table[name]).ifelse(1, 0).sum() for name in required}
    ).execute()
    return [name for name in required if (counts[name].iloc[0] or 0) > 0]


def _microsecond_timestamps(table: ir.Table) -> ir.Table:
    """Spark's timestamps carry no precision in their type; they hold microseconds, like the
    warehouse's `timestamp(6)` the schemas name."""
    loose = {name: dt.Timestamp(scale=6) for name, kind in table.schema().items()
             if kind.is_timestamp() and kind.scale is None}  # fmt: skip
    return table.cast(loose) if loose else table


def _describe(case: dict, rules: dict, table: ir.Table, row_label: Sequence[str]) -> str | None:
    """What broke and where; None when no row actually breaks it (pandera's Ibis backend
    reports null checks as failed on empty tables)."""
    check = str(case["check"])
    column = case["column"]
    rule = rules.get(check)
    if isinstance(rule, TableRule):
        offending = rule.offenders(table)
    elif isinstance(rule, Rule):
        offending = table.filter(~rule.holds(table).fill_null(True))
    elif check == "not_nullable" and column in table.columns:
        offending = table.filter(_missing(table[column]))
        check = f"column {column} must not be null"
    else:
        return f"{column}: {check} ({case['failure_case']})"
    count = offending.count().execute()
    if count == 0:
        return None
    sample = offending.select(*row_label).limit(ROWS_SHOWN).execute()
    labels = [":".join(str(value) for value in row) for row in sample.itertuples(index=False)]
    more = f" and {count - len(labels)} more" if count > len(labels) else ""
    return f"rule '{check}' broken by {count} row(s): {', '.join(labels)}{more}"


def ibis_table(con: duckdb.DuckDBPyConnection, name: str) -> ir.Table:
    """An Ibis view of a table on an open DuckDB connection."""
    return ibis.duckdb.from_connection(con).table(name)


def recheck_stored(
    con: duckdb.DuckDBPyConnection,
    table: str,
    start: datetime,
    end: datetime,
    validate: Callable[[str], None],
    time_column: str = "snapshot_hour",
    extra: dict[str, str] | None = None,
) -> str | None:
    """Validate the rows a run stored in `table` for `[start, end)` (and `extra` column =
    value filters) again, as an asset check; the failure message, or None when they pass."""
    copy = f"recheck_{table}"
    filters = " ".join(f"AND {column} = ${column}" for column in extra or {})
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {copy} AS SELECT * FROM {table} "
        f"WHERE {time_column} >= $start AND {time_column} < $end {filters}",
        {"start": start, "end": end, **(extra or {})},
    )
    try:
        validate(copy)
    except FrameValidationError as error:
        return str(error)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {copy}")
    return None
