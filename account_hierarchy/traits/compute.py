"""Computing every trait of accounts and users for each hour of a window, into
`account_traits` and `user_traits` (one row per entity and snapshot hour, one column per trait).

Every account (user) of the hour's snapshot gets a row, with the natural empty value of a trait
when nothing matched. Computed traits of one entity and attribution class are one query per
hour; SQL traits run once per hour against the snapshot views.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import ibis
import ibis.expr.types as ir

from account_hierarchy.catalog.loader import Catalog, LocatedTrait
from account_hierarchy.catalog.models import MostFrequent, SqlTrait
from account_hierarchy.traits.compile import (
    ENTITY_ID,
    Snapshot,
    aggregate,
    attributed_events,
    attribution_class,
    empty_value,
    most_frequent,
)
from account_hierarchy.traits.schemas import validate_traits
from account_hierarchy.traits.sql_traits import (
    against_views,
    create_snapshot_views,
    parse_trait_sql,
)

TRAIT_TABLES = {"account": "account_traits", "user": "user_traits"}
ENTITY_TABLES = {"account": "accounts", "user": "users"}


@dataclass(frozen=True)
class CompiledTrait:
    """A trait and the SQL it compiled to for one snapshot hour (shown in the UI)."""

    located: LocatedTrait
    sql: str


def hours_of(start: datetime, end: datetime) -> list[datetime]:
    """Every hour of `[start, end)`."""
    count = int((end - start) / timedelta(hours=1))
    return [start + timedelta(hours=index) for index in range(count)]


def build_traits(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    *,
    describe: bool = False,
) -> dict[str, dict]:
    """Write both trait tables for the window; return per entity the row count and (with
    `describe`) the SQL each trait compiled to for the window's last hour."""
    backend = ibis.duckdb.from_connection(con)
    report = {}
    for entity, table in TRAIT_TABLES.items():
        staged = f"{table}_staged"
        con.execute(f"DROP TABLE IF EXISTS {staged}")
        compiled: dict[str, str] = {}
        hours = hours_of(start, end)
        for hour in hours:
            expr, compiled = _entity_rows(
                con, backend, catalog, entity, hour, describe=describe and hour == hours[-1]
            )
            sql = ibis.to_sql(expr, dialect="duckdb")
            if hour == start:
                con.execute(f"CREATE TEMP TABLE {staged} AS {sql}")
            else:
                con.execute(f"INSERT INTO {staged} BY NAME {sql}")
        if not hours_of(start, end):
            continue
        validate_traits(con, staged, entity, catalog)
        _align_columns(con, table, staged)
        con.execute(
            f"DELETE FROM {table} WHERE snapshot_hour >= $start AND snapshot_hour < $end",
            {"start": start, "end": end},
        )
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {staged} ORDER BY 1, 2")
        (rows,) = con.execute(f"SELECT count(*) FROM {staged}").fetchone()
        report[entity] = {"rows": rows, "compiled": compiled}
    return report


def _entity_rows(
    con: duckdb.DuckDBPyConnection,
    backend,
    catalog: Catalog,
    entity: str,
    hour: datetime,
    *,
    describe: bool,
) -> tuple[ir.Table, dict[str, str]]:
    """The hour's rows for one entity, and (if `describe`) each trait's compiled SQL."""
    as_of = hour + timedelta(hours=1)
    snapshot = Snapshot(
        events=backend.table("raw_events"),
        memberships=_at(backend.table("account_memberships"), hour),
        hierarchy=_at(backend.table("account_hierarchy"), hour),
        hour=hour,
        as_of=as_of,
    )
    id_column = ENTITY_ID[entity]
    entities = _at(backend.table(ENTITY_TABLES[entity]), hour)
    rows = entities.select(entity_id=entities[id_column])
    compiled: dict[str, str] = {}
    classes: dict[tuple, list[LocatedTrait]] = defaultdict(list)
    for located in catalog.traits_of(entity):
        if isinstance(located.trait, SqlTrait):
            result = _sql_trait(con, backend, located.trait, hour)
            compiled[located.trait.name] = against_views(
                parse_trait_sql(located.trait.sql, entity)[0]
            )
            rows = rows.left_join(result, "entity_id").drop("entity_id_right")
        else:
            classes[attribution_class(located.trait)].append(located)
    for key, members in classes.items():
        events = attributed_events(snapshot, key)
        plain = [m.trait for m in members if not isinstance(m.trait, MostFrequent)]
        parts = [aggregate(events, plain, as_of)] if plain else []
        parts += [most_frequent(events, m.trait, as_of) for m in members
                  if isinstance(m.trait, MostFrequent)]  # fmt: skip
        for part in parts:
            rows = rows.left_join(part, "entity_id").drop("entity_id_right")
        for located in members if describe else []:
            compiled[located.trait.name] = ibis.to_sql(
                _single(events, located, as_of), dialect="duckdb"
            )
    fills = {}
    for located in catalog.traits_of(entity):
        if not isinstance(located.trait, SqlTrait):
            empty = empty_value(located.trait)
            if empty is not None:
                fills[located.trait.name] = ibis.coalesce(rows[located.trait.name], empty)
    rows = rows.mutate(**fills) if fills else rows
    columns = [column for located in catalog.traits_of(entity) for column in located.columns]
    final = rows.select(
        snapshot_hour=ibis.literal(hour, type="timestamp"),
        **{id_column: rows.entity_id},
        **{column: rows[column] for column in columns},
    )
    return final, compiled


def _single(events: ir.Table, located: LocatedTrait, as_of: datetime) -> ir.Table:
    trait = located.trait
    if isinstance(trait, MostFrequent):
        return most_frequent(events, trait, as_of)
    return aggregate(events, [trait], as_of)


def _at(table: ir.Table, hour: datetime) -> ir.Table:
    return table.filter(table.snapshot_hour == ibis.literal(hour, type="timestamp"))


def _sql_trait(con: duckdb.DuckDBPyConnection, backend, trait: SqlTrait, hour: datetime):
    """Run a SQL trait for one hour into a temp table keyed by `entity_id`."""
    query, values = parse_trait_sql(trait.sql, trait.entity)
    id_column = ENTITY_ID[trait.entity]
    create_snapshot_views(con, hour)
    result = f"sql_trait_{trait.name}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {result}_raw AS {against_views(query)}")
    if trait.many:
        lists = ", ".join(f'list(DISTINCT "{v}" ORDER BY "{v}") AS "{v}"' for v in values)
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE {result} AS SELECT "{id_column}" AS entity_id, '
            f'{lists} FROM {result}_raw WHERE "{id_column}" IS NOT NULL GROUP BY ALL'
        )
    else:
        repeated = con.execute(
            f'SELECT "{id_column}", count(*) FROM {result}_raw GROUP BY ALL HAVING count(*) > 1 '
            "ORDER BY 1 LIMIT 1"
        ).fetchone()
        if repeated:
            raise ValueError(
                f"SQL trait {trait.name} returned {repeated[1]} rows for {id_column} "
                f"{repeated[0]!r} at {hour}; return one row per {id_column}, or set `many: true` "
                "to collect the values as lists"
            )
        columns = ", ".join(f'"{v}"' for v in values)
        con.execute(
            f'CREATE OR REPLACE TEMP TABLE {result} AS SELECT "{id_column}" AS entity_id, '
            f'{columns} FROM {result}_raw WHERE "{id_column}" IS NOT NULL'
        )
    return backend.table(result)


def _align_columns(con: duckdb.DuckDBPyConnection, table: str, staged: str) -> None:
    """Give `table` exactly the columns of `staged` (adding, retyping or dropping)."""
    wanted = _column_types(con, staged)
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {staged} WITH NO DATA")
    existing = _column_types(con, table)
    for name, kind in wanted.items():
        quoted = f'"{name}"'
        if name not in existing:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted} {kind}")
        elif existing[name] != kind:
            con.execute(f"ALTER TABLE {table} DROP COLUMN {quoted}")
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quoted} {kind}")
    for name in existing.keys() - wanted.keys():
        con.execute(f'ALTER TABLE {table} DROP COLUMN "{name}"')


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $t "
        "ORDER BY ordinal_position",
        {"t": table},
    ).fetchall()
    return dict(rows)
