"""Validate warehouse frames with pandera, reporting each broken rule with the rows that break it.

Frames are Ibis tables, so the checks run inside the engine (DuckDB or Spark) without pulling
rows into pandas. Row-level rules are written as `Rule`s: a name and an Ibis boolean expression
over the table; whole-table rules (uniqueness) as `TableRule`s. `validate_table` counts every
rule's offending rows and every required column's nulls in one query (pandera's Ibis backend
asks once per check, a job each on Spark), after pandera has checked the columns and their
types, and the same expressions find the offending rows for the error.
"""

import copy
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import NoReturn

import duckdb
import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd
import pandera.ibis as pa
from ibis import _
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
    offenders: Callable[[ir.Table], ir.Table]


def unique(*keys: str) -> TableRule:
    """One row per combination of `keys`."""

    def offenders(t: ir.Table) -> ir.Table:
        counts = t.group_by(list(keys)).aggregate(copies=t.count())
        return t.semi_join(counts.filter(counts.copies > 1), list(keys))

    return TableRule(f"one row per {', '.join(keys)}", offenders)


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
    return lambda data: _offending(rule, data.table).count() == 0


def _breaks(rule: Rule, table: ir.Table) -> ir.BooleanColumn:
    """Rows breaking a row-level rule (nulls pass: nullability is the columns' business)."""
    return ~rule.holds(table).fill_null(True)


def _offending(rule: Rule | TableRule, table: ir.Table) -> ir.Table:
    """The rows of `table` that break `rule`."""
    return (
        rule.offenders(table) if isinstance(rule, TableRule) else table.filter(_breaks(rule, table))
    )


def validate_table(
    schema: pa.DataFrameSchema,
    table: ir.Table,
    rules: Sequence[Rule | TableRule],
    row_label: Sequence[str],
) -> None:
    """Validate `table`; on failure raise `FrameValidationError` naming each failed rule and up
    to five offending rows, identified by the `row_label` columns.

    pandera first validates the schema's columns and types (and any check of its own that is
    not one of `rules`); when they hold, one query counts the nulls of the non-nullable
    columns and the rows breaking each rule."""
    table = _microsecond_timestamps(table)
    try:
        _uncounted(schema, {rule.name for rule in rules}).validate(table, lazy=True)
    except SchemaErrors as errors:
        problems = list(dict.fromkeys(
            f"{case['column']}: {case['check']} ({case['failure_case']})"
            for case in errors.failure_cases.to_dict("records")
        ))  # fmt: skip
        _fail(schema, problems)
    required = [name for name, column in schema.columns.items()
                if not column.nullable and name in table.columns]  # fmt: skip
    nulls, broken = _count_offenders(table, required, rules)
    problems = [_describe(f"column {name} must not be null", table.filter(_missing(table[name])),
                          nulls[name], row_label)
                for name in required if nulls[name]]  # fmt: skip
    problems += [_describe(rule.name, _offending(rule, table), broken[rule.name], row_label)
                 for rule in rules if broken[rule.name]]  # fmt: skip
    if problems:
        _fail(schema, problems)


def _fail(schema: pa.DataFrameSchema, problems: list[str]) -> NoReturn:
    lines = [f"{schema.name} failed validation:", *(f"- {p}" for p in problems)]
    raise FrameValidationError("\n".join(lines)) from None


def _count_offenders(
    table: ir.Table, required: list[str], rules: Sequence[Rule | TableRule]
) -> tuple[dict[str, int], dict[str, int]]:
    """The nulls of each `required` column and the rows breaking each rule, in one query."""
    metrics = {f"c{i}": _missing(table[name]).ifelse(1, 0).sum() for i, name in enumerate(required)}
    parts = []
    for i, rule in enumerate(rules):
        if isinstance(rule, TableRule):
            parts.append(rule.offenders(table).aggregate(**{f"r{i}": _.count()}))
        else:
            metrics[f"r{i}"] = _breaks(rule, table).ifelse(1, 0).sum()
    if metrics:
        parts.insert(0, table.aggregate(**metrics))
    if not parts:
        return {}, {}
    (counts,) = reduce(ir.Table.cross_join, parts).execute().to_dict("records")
    found = {key: 0 if pd.isna(value) else int(value) for key, value in counts.items()}
    nulls = {name: found[f"c{i}"] for i, name in enumerate(required)}
    return nulls, {rule.name: found[f"r{i}"] for i, rule in enumerate(rules)}


def _uncounted(schema: pa.DataFrameSchema, counted: Collection[str]) -> pa.DataFrameSchema:
    """A copy of the schema whose columns may hold nulls and without the checks named in
    `counted` (both counted beforehand)."""
    columns = {}
    for name, column in schema.columns.items():
        columns[name] = copy.copy(column)
        columns[name].nullable = True
    uncounted = copy.copy(schema)
    uncounted.columns = columns
    uncounted.checks = [check for check in schema.checks if check.name not in counted]
    return uncounted


def _missing(column: ir.Column) -> ir.BooleanColumn:
    """Null, or NaN for floating point numbers (as pandera counts them)."""
    return column.isnull() | column.isnan() if column.type().is_floating() else column.isnull()


def _microsecond_timestamps(table: ir.Table) -> ir.Table:
    """Spark's timestamps carry no precision in their type; they hold microseconds, like the
    warehouse's `timestamp(6)` the schemas name."""
    loose = {name: dt.Timestamp(scale=6) for name, kind in table.schema().items()
             if kind.is_timestamp() and kind.scale is None}  # fmt: skip
    return table.cast(loose) if loose else table


def _describe(broken: str, offending: ir.Table, count: int, row_label: Sequence[str]) -> str:
    """What broke, how often, and the first rows breaking it."""
    sample = offending.select(*row_label).limit(ROWS_SHOWN).execute()
    labels = [":".join(str(value) for value in row) for row in sample.itertuples(index=False)]
    more = f" and {count - len(labels)} more" if count > len(labels) else ""
    return f"rule '{broken}' broken by {count} row(s): {', '.join(labels)}{more}"


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
